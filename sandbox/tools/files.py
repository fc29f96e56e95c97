"""The `read_file` and `write_file` tools (through the session, as the agent's user)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from sandbox.errors import ToolArgumentError, ToolError
from sandbox.llm.base import ToolSpec
from sandbox.tools import descriptions as text
from sandbox.tools.base import ToolContext, schema_of, validate_args

# Largest file read_file loads; the model is shown at most the output budget of it anyway.
READ_LIMIT = 8 * 1024 * 1024


class ReadFileArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")

    path: str = Field(min_length=1, description=text.READ_FILE_PATH)


class WriteFileArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")

    path: str = Field(min_length=1, description=text.WRITE_FILE_PATH)
    content: str = Field(description=text.WRITE_FILE_CONTENT)


def _checked(path: str, tool: str) -> str:
    if "\x00" in path:  # no file system accepts it; say so instead of failing in the session
        raise ToolArgumentError(text.BAD_ARGUMENTS.format(name=tool, error="path: NUL byte"))
    return path


def _file_error(path: str, exc: OSError) -> ToolError:
    """The builtin errors a session raises for the agent's own mistakes, as tool errors."""
    if isinstance(exc, FileNotFoundError):
        return ToolError(text.FILE_NOT_FOUND.format(path=path))
    if isinstance(exc, IsADirectoryError):
        return ToolError(text.IS_A_DIRECTORY.format(path=path))
    if isinstance(exc, PermissionError):
        return ToolError(text.PERMISSION_DENIED.format(path=path))
    return ToolError(text.FILE_ERROR.format(path=path, error=exc.strerror or type(exc).__name__))


class ReadFileTool:
    """Reads a file as text (invalid UTF-8 replaced)."""

    name = "read_file"

    def spec(self) -> ToolSpec:
        """The read_file tool as the model sees it."""
        return ToolSpec(
            name=self.name, description=text.READ_FILE, parameters=schema_of(ReadFileArgs)
        )

    def call(self, args: dict[str, Any], ctx: ToolContext) -> str:
        """Read the file; missing files, directories and denied access are tool errors."""
        a = validate_args(ReadFileArgs, self.name, args)
        path = ctx.resolve_path(_checked(a.path, self.name))
        try:
            data = ctx.session.read_file(path, max_bytes=READ_LIMIT)
        except OSError as exc:
            raise _file_error(a.path, exc) from exc
        except ValueError as exc:
            raise ToolError(text.FILE_TOO_LARGE.format(path=a.path, limit=READ_LIMIT)) from exc
        return data.decode("utf-8", errors="replace")


class WriteFileTool:
    """Writes a text file (UTF-8)."""

    name = "write_file"

    def spec(self) -> ToolSpec:
        """The write_file tool as the model sees it."""
        return ToolSpec(
            name=self.name, description=text.WRITE_FILE, parameters=schema_of(WriteFileArgs)
        )

    def call(self, args: dict[str, Any], ctx: ToolContext) -> str:
        """Write the file; the session's own refusals become tool errors."""
        a = validate_args(WriteFileArgs, self.name, args)
        path = ctx.resolve_path(_checked(a.path, self.name))
        data = a.content.encode("utf-8")
        try:
            ctx.session.write_file(path, data)
        except OSError as exc:
            raise _file_error(a.path, exc) from exc
        return text.WROTE_FILE.format(size=len(data), path=a.path)


__all__ = ["READ_LIMIT", "ReadFileArgs", "ReadFileTool", "WriteFileArgs", "WriteFileTool"]
