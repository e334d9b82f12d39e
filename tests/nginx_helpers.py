"""nginx with the shipped configuration for the tests: ``fieldwatch.devtools.nginx``
(``make topology`` uses it too)."""

from fieldwatch.devtools.nginx import (
    NGINX_DIR,
    TEMPLATE,
    UPSTREAMS,
    Nginx,
    free_port,
    nginx_binary,
    render,
    upstreams_conf,
)

__all__ = ["NGINX_DIR", "TEMPLATE", "UPSTREAMS", "Nginx", "free_port", "nginx_binary", "render",
           "upstreams_conf"]  # fmt: skip
