"""The management API's wire types (pydantic), one module per resource: the `protocol.py` of each surface."""
