"""Drives an MCP server with the official Python SDK (PyPI `mcp` 2.x) and prints one JSON line.

Usage: py_client.py URL streamable-http|sse MODE   (MODE: legacy = initialize handshake,
or a stateless version such as 2026-07-28)
"""
import asyncio
import json
import sys

from mcp import Client
from mcp.client.sse import sse_client


async def main(url: str, transport: str, mode: str) -> None:
    server = sse_client(url) if transport == "sse" else url
    async with Client(server, mode=mode) as client:
        tools = await client.list_tools()
        result = await client.call_tool("search_documents", {"query": "runbook"})
        info = client.server_info
        print(json.dumps({
            "client": "python-sdk",
            "protocolVersion": client.protocol_version,
            "serverVersion": info.version if info else None,
            "tools": sorted(t.name for t in tools.tools),
            "text": result.content[0].text,
            "isError": bool(result.is_error),
        }))


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:4]))
