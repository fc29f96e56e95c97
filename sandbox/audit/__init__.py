"""The tamper-evident audit log: writer (hash chain), reader, verifier and signing.

Public names: `AuditLogWriter`; `read_log`, `iter_events`, `iter_records`, `TrialLog`;
`verify_log`, `VerifyReport`, `Problem`; signers and verifiers in `sandbox.audit.signing`.
"""

from sandbox.audit.reader import TrialLog, iter_events, iter_records, read_log
from sandbox.audit.verify import Problem, VerifyReport, verify_log
from sandbox.audit.writer import AuditLogWriter

__all__ = [
    "AuditLogWriter",
    "Problem",
    "TrialLog",
    "VerifyReport",
    "iter_events",
    "iter_records",
    "read_log",
    "verify_log",
]
