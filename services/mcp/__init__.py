"""The read API of context8: MCP (stdio and streamable HTTP) plus plain JSON over HTTP.

Inside this package ``import mcp`` is the MCP SDK: no module here is named ``mcp``.
"""
