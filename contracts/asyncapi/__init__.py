"""Generated AsyncAPI documents of the bus services (<service>.json), and their generator.

Regenerate with ``scripts/asyncapi``; ``scripts/asyncapi --check`` fails when code and documents
have drifted (tests/unit/test_asyncapi_docs.py runs the same comparison).
"""
