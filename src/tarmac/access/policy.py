"""Who is acting through a project, and what they may do: roles, grants and protected aliases.

Every entry point (SDK, CLI, HTTP) asks the same question at the same place, the ledger's
guard (``tarmac.ledger.guard``), which this module answers once access is *enforced*:

- ``auth: required`` in tarmac.yaml, or ``auth: auto`` (the default) with a PostgreSQL catalog
  or a ``TARMAC_TOKEN`` set: the SDK and the CLI act as the token's user
  (``tarmac.open(token=...)`` or ``TARMAC_TOKEN``), and each governed action checks that
  user's role and grants. Until an admin has been given a token, the project stays open (the
  bootstrap: ``tarmac users add me --role admin`` and ``tarmac tokens create --user me``
  first); from then on every action needs a valid token;
- ``auth: off``, or ``auto`` on the embedded SQLite catalog without a token: nothing is checked
  (the laptop default); the audit trail names ``TARMAC_USER`` or the OS user.

A permission on a resource (``table:orders``, ``model:churn``, ``alias:churn@champion``) is
allowed when:

1. the user is ``admin``; or
2. a grant gives it to the user or the user's role on that resource; or
3. the role holds the permission and *nobody* holds a grant of it on that resource. The first
   grant of a permission on a resource restricts it to its grantees (and admins), like Kafka's
   ACLs without ``allow.everyone.if.no.acl.found``: ``tarmac grant analyst read:table:orders``
   lets analysts read ``orders`` and stops every other non-admin role from reading it. Taking
   the last such grant back returns the resource to the roles' defaults.

Grants and alias protections are read from the audit trail (each record checked on its own),
not from the catalog rows, so a row inserted by hand grants nothing; ``tarmac audit verify``
names such rows. A denial raises ``PermissionDenied`` naming the permission and resource and is
audited as ``access.denied``.

Example::

    p = tarmac.open(".", token=os.environ["TARMAC_TOKEN"])
    p.access.grant("analyst", "read:table:orders")
    p.access.protect("churn@champion", role="admin", approvals=2)
    p.access.check("write", "table:orders")     # PermissionDenied for an analyst
"""

from __future__ import annotations

import contextvars
import logging
import os
import re
import secrets
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tarmac.access.identity import PERMISSIONS, ROLES, Principal, role_of
from tarmac.catalog import access as acat
from tarmac.catalog import identity as icat
from tarmac.catalog import now_us
from tarmac.errors import AuthenticationRequired, PermissionDenied, UsageError, echo

if TYPE_CHECKING:
    from tarmac.project import Project

log = logging.getLogger("tarmac.access")
TOKEN_ENV = "TARMAC_TOKEN"
MASK_ENV = "TARMAC_MASK_KEY"
#: which permissions a grant may give on each kind of resource
KINDS: dict[str, tuple[str, ...]] = {
    "table": ("read", "write", "read:pii", "ingest", "erase"),
    "model": ("predict", "train", "validate", "deploy"),
    "alias": ("promote",),
}
GRANT, UNGRANT = "access.grant", "access.ungrant"
PROTECT, UNPROTECT = "alias.protect", "alias.unprotect"
CACHE_SECONDS = 30.0
_ALIAS = re.compile(r"^([A-Za-z_][A-Za-z0-9_.-]{0,199})@([a-z][a-z0-9_-]{0,63})$")


_REQUEST: contextvars.ContextVar[Principal | None] = contextvars.ContextVar(
    "tarmac_request_principal", default=None)


def act_as(principal: Principal) -> None:
    """From here on in this context (one HTTP request's task), governed actions are checked
    as ``principal`` instead of the process's own token: what ``tarmac serve`` does once a
    request's bearer token is checked."""
    _REQUEST.set(principal)


@dataclass(frozen=True)
class Rule:
    """A protected alias: who may move it and how many other users must approve."""

    model: str
    alias: str
    role: str
    approvals: int


def enforced(project: Project, token: str | None) -> bool:
    """Whether the SDK and CLI check permissions for this project (see the module's
    docstring)."""
    mode = project.config.auth
    if mode != "auto":
        return mode == "required"
    return project.config.catalog.startswith("postgresql") or bool(token)


def parse_grant(spec: str) -> tuple[str, str]:
    """``read:table:orders`` -> (``read``, ``table:orders``); ``read:pii:table:x`` too."""
    text = spec.strip() if isinstance(spec, str) else ""
    for permission in sorted(PERMISSIONS, key=len, reverse=True):
        if text.startswith(permission + ":"):
            kind, _, name = text[len(permission) + 1:].partition(":")
            if kind not in KINDS or not name:
                break
            if permission not in KINDS[kind]:
                raise UsageError(f"grant {echo(spec)!r}: '{permission}' is not a permission on a "
                                 f"{kind} (on a {kind}: {', '.join(KINDS[kind])})")
            return permission, f"{kind}:{name}"
    raise UsageError(f"grant {echo(spec)!r} must be PERMISSION:KIND:NAME, e.g. "
                     "read:table:orders, train:model:churn or promote:alias:churn@champion",
                     hint=f"kinds: {', '.join(KINDS)}; permissions: {', '.join(PERMISSIONS)}")


class Access:
    """The acting user of one open project and the questions asked about them
    (``p.access``); installed on the ledger's guard when access is enforced."""

    def __init__(self, project: Project, token: str | None = None) -> None:
        self.project = project
        self.token = token if token is not None else (os.environ.get(TOKEN_ENV) or None)
        self.enforced = enforced(project, self.token)
        self._grants: tuple[float, dict[tuple[str, str], set[str]]] | None = None
        self._rules: tuple[float, dict[tuple[str, str], Rule]] | None = None
        self._anyone = False  # past the bootstrap (it never goes back)
        self._mask_key: bytes | None = None

    # -- who ----------------------------------------------------------------------------------

    @property
    def user(self) -> str | None:
        """The authenticated user acting (None: access is not enforced, or the bootstrap)."""
        if not self.enforced:
            return None
        try:
            found = self.principal()
        except AuthenticationRequired:
            return None
        return found.user if found is not None else None

    def principal(self) -> Principal | None:
        """The token's user; None while access is open (not enforced, or no users yet).
        Raises ``AuthenticationRequired`` when a token is needed and none is valid."""
        if not self.enforced:
            return None
        override = _REQUEST.get()
        if override is not None:
            return override
        if not self._locked():
            return None
        found = self.project.identity.authenticate(self.token)
        if found is None:
            raise AuthenticationRequired(
                "this project checks who is acting and " + (
                    f"{TOKEN_ENV} is not a valid token" if self.token
                    else f"no token was given ({TOKEN_ENV} is not set)"),
                hint=f"export {TOKEN_ENV}=tmk_... (`tarmac tokens create --user NAME`, by an "
                     "admin); tokens that expired or were revoked are refused alike")
        return found

    def whoami(self) -> dict[str, Any]:
        """Who this process acts as, and under which mode (``tarmac whoami``)."""
        found = self.principal()
        mode = ("enforced" if self.enforced and found is not None
                else "open until an admin has a token" if self.enforced else "not enforced")
        return {"user": found.user if found else self.project.ledger.actor,
                "role": found.role if found else None, "access": mode,
                "auth": self.project.config.auth}

    def _locked(self) -> bool:
        """Past the bootstrap: an admin has been given a token (then stays so)."""
        if self._anyone:
            return True
        if icat.admin_has_token(self.project.catalog):
            self._anyone = True
            return True
        return False

    # -- the question ---------------------------------------------------------------------

    def allows(self, permission: str, resource: str | None = None) -> bool:
        """Whether the acting user may (nothing is recorded)."""
        try:
            found = self.principal()
        except AuthenticationRequired:
            return False
        return found is None or self.permits(found, permission, resource)

    def check(self, permission: str, resource: str | None = None) -> None:
        """Raise ``PermissionDenied`` (audited as ``access.denied``) unless the acting user
        may do ``permission`` on ``resource``."""
        found = self.principal()
        if found is None or self.permits(found, permission, resource):
            return
        self.deny(found, permission, resource, via="sdk")

    def require_role(self, role: str, resource: str) -> None:
        """A protected alias's rule: the acting user must hold ``role`` (or be admin)."""
        found = self.principal()
        if found is None or found.role in (role, "admin"):
            return
        self.deny(found, f"role:{role}", resource, via="sdk")

    def deny(self, found: Principal, permission: str, resource: str | None, *,
             via: str) -> None:
        what = f" on {resource}" if resource else ""
        try:
            self.project.ledger.commit("access.denied", f"user:{found.user}",
                                       {"permission": permission, "resource": resource,
                                        "via": via})
        except Exception as exc:  # the denial stands; its record is best effort
            log.error("could not audit a denied action: %s", exc)
        need = (f"the role {permission.removeprefix('role:')}" if permission.startswith("role:")
                else f"the permission '{permission}'")
        raise PermissionDenied(
            f"user '{found.user}' (role {found.role}) lacks {need}{what}",
            hint="an admin can change the role (`tarmac users role`) or grant it "
                 f"(`tarmac grant {found.role} {permission}:{resource or 'KIND:NAME'}`)"
            if not permission.startswith("role:") else "ask a user with that role")

    def permits(self, found: Principal, permission: str, resource: str | None) -> bool:
        if found.role == "admin":
            return True
        if resource is not None:
            holders = self._grant_map().get((permission, resource))
            if holders is not None:
                return bool(holders & {f"role:{found.role}", f"user:{found.user}"})
        return found.may(permission)

    def _grant_map(self) -> dict[tuple[str, str], set[str]]:
        now = time.monotonic()
        if self._grants is not None and now < self._grants[0]:
            return self._grants[1]
        ledger = self.project.ledger
        held: dict[tuple[str, str], set[str]] = {}
        records = sorted([*ledger.trusted(GRANT), *ledger.trusted(UNGRANT)],
                         key=lambda r: r.seq)
        for rec in records:
            d = _details(rec.details)
            key = (str(d.get("permission")), rec.target)
            if rec.action == GRANT:
                held.setdefault(key, set()).add(str(d.get("subject")))
            elif key in held:
                held[key].discard(str(d.get("subject")))
                if not held[key]:  # the last grant gone: back to the roles' defaults
                    del held[key]
        self._grants = (now + CACHE_SECONDS, held)
        return held

    # -- grants ---------------------------------------------------------------------------

    def grants(self) -> list[acat.Grant]:
        return acat.grants(self.project.catalog)

    def grant(self, subject: str, spec: str) -> acat.Grant:
        """Give ``subject`` (a role, or a user) a permission on one resource (audited)."""
        self.project.ledger.guard.check("manage:users")
        who = self._subject(subject)
        permission, resource = parse_grant(spec)
        self._resource_exists(resource)
        if any(g.subject == who and g.permission == permission and g.resource == resource
               for g in self.grants()):
            raise UsageError(f"{subject} already holds {permission} on {resource}")
        row = acat.Grant(who, permission, resource, now_us(), self.project.ledger.actor)
        self.project.ledger.commit(GRANT, resource, {"subject": who, "permission": permission},
                                   change=lambda conn: acat.add_grant(conn, row))
        self._grants = None
        return row

    def ungrant(self, subject: str, spec: str) -> bool:
        """Take a grant back (audited). The resource stays restricted to the grants left;
        True when it was the last one, and the roles' defaults hold there again."""
        self.project.ledger.guard.check("manage:users")
        who = self._subject(subject, known=False)
        permission, resource = parse_grant(spec)
        if not any(g.subject == who and g.permission == permission and g.resource == resource
                   for g in self.grants()):
            raise UsageError(f"{subject} holds no grant of {permission} on {resource}",
                             hint="`tarmac grants` lists them")
        self.project.ledger.commit(UNGRANT, resource, {"subject": who, "permission": permission},
                                   change=lambda conn: acat.remove_grant(conn, who, permission,
                                                                         resource))
        self._grants = None
        return not any(g.permission == permission and g.resource == resource
                       for g in self.grants())

    def _subject(self, name: str, *, known: bool = True) -> str:
        if name in ROLES:
            return f"role:{name}"
        if icat.get_user(self.project.catalog, name) is not None or not known:
            return f"user:{name}"
        role_of(name)  # names the roles, with a suggestion
        raise AssertionError("unreachable")

    def _resource_exists(self, resource: str) -> None:
        kind, _, name = resource.partition(":")
        if kind == "table":
            if self.project.catalog.get_dataset(name) is None:
                from tarmac.features.definitions import suggest

                raise UsageError(f"no table named {echo(name)!r} in the lake"
                                 + suggest(name, [d.name for d in self.project.datasets()],
                                           none=""),
                                 hint="`tarmac tables` lists them")
            return
        model = name.partition("@")[0] if kind == "alias" else name
        if kind == "alias" and not _ALIAS.match(name):
            raise UsageError(f"alias {echo(name)!r} must be MODEL@ALIAS, e.g. churn@champion")
        if model not in self.project.models.names() and \
                model not in self.project.models.declared():
            raise UsageError(f"no model named {echo(model)!r}",
                             hint="`tarmac models list` lists them")

    # -- protected aliases ------------------------------------------------------------------

    def protections(self) -> list[acat.Protection]:
        return acat.protections(self.project.catalog)

    def protect(self, alias: str, *, role: str = "admin", approvals: int = 0) -> Rule:
        """Only users with ``role`` may move ``MODEL@ALIAS``, and only once ``approvals``
        other users holding it approved (``tarmac approve``). Audited."""
        self.project.ledger.guard.check("manage:users")
        model, name = self._alias(alias)
        role_of(role)
        if not isinstance(approvals, int) or isinstance(approvals, bool) or \
                not 0 <= approvals <= 10:
            raise UsageError(f"--approvals {echo(approvals)!r} must be a whole number from 0 "
                             "to 10")
        self._resource_exists(f"alias:{model}@{name}")
        rule = acat.Protection(model, name, role, approvals, now_us(),
                               self.project.ledger.actor)
        self.project.ledger.commit(PROTECT, f"model:{model}",
                                   {"alias": name, "role": role, "approvals": approvals},
                                   change=lambda conn: acat.set_protection(conn, rule))
        self._rules = None
        return Rule(model, name, role, approvals)

    def unprotect(self, alias: str) -> None:
        self.project.ledger.guard.check("manage:users")
        model, name = self._alias(alias)
        if self.rule(model, name) is None:
            raise UsageError(f"{model}@{name} is not protected")
        self.project.ledger.commit(UNPROTECT, f"model:{model}", {"alias": name},
                                   change=lambda conn: acat.remove_protection(conn, model,
                                                                              name))
        self._rules = None

    def rule(self, model: str, alias: str) -> Rule | None:
        """The protection of ``model@alias`` as the audit trail says it is."""
        now = time.monotonic()
        if self._rules is None or now >= self._rules[0]:
            ledger = self.project.ledger
            rules: dict[tuple[str, str], Rule] = {}
            for rec in sorted([*ledger.trusted(PROTECT), *ledger.trusted(UNPROTECT)],
                              key=lambda r: r.seq):
                d = _details(rec.details)
                key = (rec.target.removeprefix("model:"), str(d.get("alias")))
                if rec.action == PROTECT:
                    rules[key] = Rule(key[0], key[1], str(d.get("role")),
                                      int(d.get("approvals") or 0))
                else:
                    rules.pop(key, None)
            self._rules = (now + CACHE_SECONDS, rules)
        return self._rules[1].get((model, alias))

    @property
    def mask_key(self) -> bytes:
        """The key that pseudonymizes personal data for users without ``read:pii``:
        ``TARMAC_MASK_KEY``, else ``.tarmac/mask.key`` (made on first use, mode 0600)."""
        if self._mask_key is None:
            env = os.environ.get(MASK_ENV, "")
            if env:
                self._mask_key = env.encode("utf-8")
            else:
                path = self.project.root / ".tarmac" / "mask.key"
                if not path.exists():
                    path.parent.mkdir(parents=True, exist_ok=True)
                    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                    with os.fdopen(fd, "wb") as fh:
                        fh.write(secrets.token_bytes(32))
                self._mask_key = path.read_bytes()
        return self._mask_key

    def protected_move(self, model: str, alias: str, version: int, action: str,
                       reason: str | None) -> None:
        from tarmac.access.approvals import request_move

        request_move(self, model, alias, version, action, reason)

    @staticmethod
    def _alias(spec: str) -> tuple[str, str]:
        m = _ALIAS.match(spec.strip() if isinstance(spec, str) else "")
        if m is None:
            raise UsageError(f"{echo(spec)!r} must be MODEL@ALIAS, e.g. churn@champion")
        return m.group(1), m.group(2)


def _details(text: str) -> dict[str, Any]:
    import json

    try:
        value = json.loads(text)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


__all__ = ["CACHE_SECONDS", "KINDS", "MASK_ENV", "TOKEN_ENV", "Access", "Rule", "act_as",
           "enforced", "parse_grant"]
