"""The HTTP face: starlette app on hypercorn, OpenAI + generic routes, SSE, auth, limits."""
