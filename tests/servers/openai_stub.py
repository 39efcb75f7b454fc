"""A minimal OpenAI-compatible streaming server for tests and the client-overhead benchmark.

Plain asyncio HTTP/1.1 (keep-alive, chunked SSE) so that it is small, fast and can misbehave
on purpose. Run: python tests/servers/openai_stub.py --mode normal [--token-delay S]
It binds 127.0.0.1 on a free port and prints "PORT <n>" on its first stdout line.

Modes: normal, http500, notfound (404 everywhere), drop (closes the connection mid-stream),
malformed (one chunk is not JSON), hang (reads the request, never answers), slow (0.2 s a
token), nousage (no usage chunk, finish_reason "stop": tokens must be counted), truncated
([DONE] half-way with no finish_reason, as llama-cpp-python does to interrupted requests).
A token is one word; /tokenize counts words, as a real tokenizer would count tokens.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys


class Stub:
    def __init__(self, mode: str, token_delay: float, ttft_delay: float):
        self.mode, self.token_delay, self.ttft_delay = mode, token_delay, ttft_delay

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:  # keep-alive: many requests per connection
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                method, path, _ = lines[0].split(" ", 2)
                headers = {k.lower(): v.strip() for k, v in
                           (ln.split(":", 1) for ln in lines[1:] if ":" in ln)}
                body = await reader.readexactly(int(headers.get("content-length", 0)))
                if not await self.route(method, path, body, writer):
                    break
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
            pass
        finally:
            writer.close()

    async def route(self, method, path, body, writer) -> bool:
        if self.mode == "hang":
            await asyncio.sleep(3600)
        if self.mode == "notfound":
            return await self.send(writer, 404, {"error": "not found"})
        if path == "/v1/models":
            return await self.send(writer, 200, {"data": [{"id": "stub-model"}]})
        if path in ("/tokenize", "/extras/tokenize"):
            text = json.loads(body or b"{}").get("content", "")
            return await self.send(writer, 200, {"tokens": list(range(len(text.split())))})
        if path not in ("/v1/completions", "/v1/chat/completions"):
            return await self.send(writer, 404, {"error": f"no route {path}"})
        if self.mode == "http500":
            return await self.send(writer, 500, {"error": "internal error (stub)"})
        req = json.loads(body)
        return await self.stream(writer, req, chat=path.endswith("chat/completions"))

    async def send(self, writer, status: int, obj) -> bool:
        data = json.dumps(obj).encode()
        writer.write(b"HTTP/1.1 %d X\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n"
                     % (status, len(data)) + data)
        await writer.drain()
        return True

    async def stream(self, writer, req: dict, chat: bool) -> bool:
        n = int(req.get("max_tokens", 16))
        prompt = req["messages"][0]["content"] if chat else req.get("prompt", "")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                     b"Transfer-Encoding: chunked\r\n\r\n")

        def event(obj_or_text) -> bytes:
            s = obj_or_text if isinstance(obj_or_text, str) else json.dumps(obj_or_text)
            data = f"data: {s}\n\n".encode()
            return b"%x\r\n%s\r\n" % (len(data), data)

        if self.ttft_delay:
            await asyncio.sleep(self.ttft_delay)
        delay = 0.2 if self.mode == "slow" else self.token_delay
        for i in range(n):
            if self.mode == "drop" and i == n // 2:
                writer.transport.abort()  # the connection dies mid-stream
                return False
            if self.mode == "truncated" and i == n // 2:
                break
            if self.mode == "malformed" and i == 1:
                writer.write(event('{"choices": [{"text": "oops"'))
                continue
            choice = ({"index": 0, "delta": {"content": " tok"}} if chat else {"index": 0, "text": " tok"})
            if i == n - 1:  # nousage: a finish_reason that says nothing about the count
                choice["finish_reason"] = "stop" if self.mode == "nousage" else "length"
            writer.write(event({"object": "text_completion", "choices": [choice]}))
            if delay:
                await writer.drain()
                await asyncio.sleep(delay)
            elif i % 64 == 0:
                await writer.drain()
        wants_usage = (req.get("stream_options") or {}).get("include_usage")
        if wants_usage and self.mode not in ("nousage", "truncated"):
            writer.write(event({"choices": [], "usage": {"prompt_tokens": len(prompt.split()),
                                                         "completion_tokens": n,
                                                         "total_tokens": n + len(prompt.split())}}))
        writer.write(event("[DONE]") + b"0\r\n\r\n")
        await writer.drain()
        return True


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mode", default="normal")
    ap.add_argument("--token-delay", type=float, default=0.0)
    ap.add_argument("--ttft-delay", type=float, default=0.0)
    a = ap.parse_args()
    stub = Stub(a.mode, a.token_delay, a.ttft_delay)
    server = await asyncio.start_server(stub.handle, "127.0.0.1", 0, backlog=1024)
    print(f"PORT {server.sockets[0].getsockname()[1]}", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        sys.exit(0)
