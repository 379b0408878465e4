"""Pure mappings of the API models (`apis`) onto intelligence's own parameter types.

Both the operator (`controllers`) and the services may import these; they import only `apis`
and `intelligence` (an import-linter contract says so): no I/O, no clock, no framework.
"""
