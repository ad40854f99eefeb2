"""Who is asking, and what they may do: OpenID Connect tokens checked locally, roles, and the signed-in identity."""

from hope.auth.identity import ANONYMOUS_DEMO_USER, Identity, Role, recorded_user

__all__ = ["ANONYMOUS_DEMO_USER", "Identity", "Role", "recorded_user"]
