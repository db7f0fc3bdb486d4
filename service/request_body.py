"""A request body read with a cap, for routes that take a large text (the .env import): refused with a 413
naming the limit before the rest is read, whether the client declared its length or streams it."""
from fastapi import HTTPException, Request


def too_large(limit: int) -> HTTPException:
    return HTTPException(413, f"the request body is over {limit} bytes, the limit of this request")


async def read_capped(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise too_large(limit)
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_large(limit)
        chunks.append(chunk)
    body = b"".join(chunks)
    request._body = body  # noqa: SLF001 (Starlette's own cache: a form parsed next reads it, not the socket)
    return body
