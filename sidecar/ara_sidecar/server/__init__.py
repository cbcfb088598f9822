"""The HTTP service (`ara-sidecar serve`): `app` (routes), `guards` (token, body limits, error
responses), `jobs` (queue, worker supervision), `worker` (the render process), `uploads`
(avatars and audio), `serve` (uvicorn and the command line)."""
