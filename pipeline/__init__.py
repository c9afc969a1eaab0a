"""Pure domain logic: image intake, photo-quality checks, triage policy.

No I/O beyond bytes in, values out, so every rule can be tested and reused anywhere.
"""
