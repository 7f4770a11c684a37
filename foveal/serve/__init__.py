"""`foveal serve weights=best.onnx`: trained weights of any task behind an HTTP API and a web page.

app.py holds the FastAPI application (GET / the page, POST /predict, GET /health, GET /info, GET
/video/...); page.html is the one self-contained page it serves (no build step, no CDN).
"""

from .app import serve

__all__ = ["serve"]
