"""One router per resource; edge/web/api.py mounts them."""
