"""A minimal OpenAI-compatible streaming server for tests and the client-overhead benchmark.

Plain asyncio HTTP/1.1 (keep-alive, chunked SSE) so that it is small, fast and can misbehave
on purpose. Run: python tests/servers/openai_stub.py --mode normal [--token-delay S]
It binds 127.0.0.1 on a free port and prints "PORT <n>" on its first stdout line.

Modes: normal, http500, notfound (404 everywhere), drop (closes the connection mid-stream),
malformed (one chunk is not JSON), hang (reads the request, never answers), slow (0.2 s a
token), nousage (no usage chunk, finish_reason "stop": tokens must be counted), truncated
([DONE] half-way with no finish_reason, as llama-cpp-python does to interrupted requests).
Hostile modes (issue 11): choices_str ({"choices": "abc"}), delta_str (delta a string),
usage_str (completion_tokens "lots"), usage_huge (10^9), usage_negative (-5), prompt_huge
(usage.prompt_tokens 10^9), longline (one SSE line of 64 MiB), flood (chunks forever,
ignoring max_tokens), tokenize_one (/tokenize always answers 1 token), tokenize_junk (/tokenize
answers a list), models_junk (/v1/models answers {"data": 7}).
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
            return await self.send(writer, 200, {"data": 7} if self.mode == "models_junk"
                                   else {"data": [{"id": "stub-model"}]})
        if path in ("/tokenize", "/extras/tokenize"):
            if self.mode == "tokenize_one":
                return await self.send(writer, 200, {"tokens": [1]})
            if self.mode == "tokenize_junk":
                return await self.send(writer, 200, [1, 2, 3])
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
        if self.mode == "longline":  # a 64 MiB line: a client must cap what it buffers
            writer.write(b"%x\r\n%s\r\n" % (6, b"data: "))
            block = b"x" * (1 << 20)
            for _ in range(64):
                writer.write(b"%x\r\n%s\r\n" % (len(block), block))
                await writer.drain()
            writer.write(event("[DONE]") + b"0\r\n\r\n")
            await writer.drain()
            return True
        if self.mode == "flood":  # valid chunks forever, whatever max_tokens says
            i = 0
            while True:
                writer.write(event({"choices": [{"index": 0, "text": " tok"}]}))
                i += 1
                if i % 64 == 0:
                    await writer.drain()
        bad = {"choices_str": {"choices": "abc"},
               "delta_str": {"choices": [{"index": 0, "delta": "abc"}]},
               "usage_str": {"choices": [], "usage": {"completion_tokens": "lots"}}}.get(self.mode)
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
            if bad is not None and i == 2:
                writer.write(event(bad))
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
            completion = {"usage_huge": 10**9, "usage_negative": -5}.get(self.mode, n)
            prompt_n = 10**9 if self.mode == "prompt_huge" else len(prompt.split())
            writer.write(event({"choices": [], "usage": {"prompt_tokens": prompt_n,
                                                         "completion_tokens": completion,
                                                         "total_tokens": completion + prompt_n}}))
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
