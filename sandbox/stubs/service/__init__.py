"""The stub services that run inside the stubs container (stdlib-only Python).

This package is copied into the stubs image and started as
`python3 -B -m stubsvc --world DIR`. It must import nothing but the standard
library and its own modules (relative imports), so that the image needs only
python3. The host side (sandbox.stubs.world) reads the events it appends.
"""
