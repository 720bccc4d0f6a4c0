"""The built-in web console: static files served from the package at `/console`, no build step, no CDN."""
