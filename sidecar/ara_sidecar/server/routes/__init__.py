"""The routes of the HTTP API, one module per OpenAPI tag (render.py: render and jobs;
uploads.py: avatars and audio) and the web page (web.py); app.py includes them."""
