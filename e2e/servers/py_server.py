"""A real MCP server on the official Python SDK (`mcp` 2.x, MCPServer) over Streamable HTTP.

It serves both protocol eras: the `initialize` handshake (2024-11-05 … 2025-11-25) and the
stateless 2026-07-28 revision. Binds a loopback socket on a free port and prints
`listening on 127.0.0.1:PORT` once it accepts connections, so tests never race for a port.

    python py_server.py [--json-response]
"""

import argparse
import socket
import sys

import anyio
import uvicorn
from mcp.server.mcpserver import MCPServer

server = MCPServer("py-reference-server")


@server.tool()
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


@server.tool()
def greet(name: str, punctuation: str = "!") -> str:
    """Greet someone by name."""
    return f"Hello, {name}{punctuation}"


async def main(json_response: bool) -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    host, port = sock.getsockname()
    app = server.streamable_http_app(json_response=json_response, host=host)
    config = uvicorn.Config(app, log_level="warning")
    uv = uvicorn.Server(config)

    async def announce() -> None:
        while not uv.started:
            await anyio.sleep(0.02)
        print(f"listening on {host}:{port}", flush=True)

    async with anyio.create_task_group() as tg:
        tg.start_soon(announce)
        await uv.serve(sockets=[sock])
        tg.cancel_scope.cancel()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--json-response", action="store_true")
    args = parser.parse_args()
    try:
        anyio.run(main, args.json_response)
    except KeyboardInterrupt:
        sys.exit(0)
