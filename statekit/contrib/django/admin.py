"""Admin for models that carry a machine: `StateModelAdmin`.

    from django.contrib import admin
    from statekit.contrib.django.admin import StateModelAdmin

    @admin.register(Order)
    class OrderAdmin(StateModelAdmin):
        list_display = ("id", "customer", "state", "stuck_at")

The state fields are read-only; the change list filters by state and by stuck, and
has one action per event that takes no payload input, plus retry and resolve; the
change page has a button (with a form for its payload) per event allowed from the
instance's state, the history, the instance's diagram (its path highlighted), and
for a stuck instance its compensations with retry and resolve.

Permissions (declare them with `statekit_permissions` in the model's
``Meta.permissions``; superusers have them all): ``<app>.fire_<event>_<model>``
fires one event, ``<app>.retry_<model>`` and ``<app>.resolve_<model>`` pull the
stuck instance's levers. A refused transition is shown with statekit's message;
nothing is written.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.helpers import ActionForm
from django.contrib.auth.models import AnonymousUser, PermissionsMixin
from django.core.exceptions import PermissionDenied
from django.db.models import Model, QuerySet
from django.http import (
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseNotAllowed,
    HttpResponseRedirect,
)
from django.urls import URLPattern, path, reverse

from statekit.contrib.django import checks  # noqa: F401 - registers the system checks
from statekit.contrib.django.hosting import host
from statekit.contrib.django.mixin import STATE_COLUMNS
from statekit.contrib.django.panel import Panel, panel_of
from statekit.contrib.django.permissions import statekit_permissions
from statekit.contrib.events import PayloadField, payload_fields, payload_from
from statekit.engine import Machine
from statekit.errors import StatekitError
from statekit.records import TransitionRecord
from statekit.runtime import Runner
from statekit.store.protocol import Reads

__all__ = [
    "STATE_FIELDS",
    "StateFilter",
    "StateModelAdmin",
    "StuckFilter",
    "statekit_permissions",
]

STATE_FIELDS = STATE_COLUMNS
"""The state fields the admin shows read-only (statekit writes them, in transitions)."""


def _machine_of(model: type[Model]) -> Machine:
    return host().runner_for(model).machine


class StateFilter(admin.SimpleListFilter):
    """By state: every state the machine declares, in its order."""

    title = "state"
    parameter_name = "state"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        states = _machine_of(model_admin.model).states
        return [(state, state.replace("_", " ")) for state in states]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        value = self.value()
        return queryset if value is None else queryset.filter(state=value)


class StuckFilter(admin.SimpleListFilter):
    """Stuck (waiting for a person) or not."""

    title = "stuck"
    parameter_name = "stuck"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("yes", "Stuck"), ("no", "Not stuck")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        if self.value() == "yes":
            return queryset.filter(stuck_at__isnull=False)
        if self.value() == "no":
            return queryset.filter(stuck_at__isnull=True)
        return queryset


class LeverForm(ActionForm):
    """The change list's action bar, with what the resolve action needs."""

    resolve_state = forms.CharField(required=False, label="Resolve into", max_length=64)
    resolve_note = forms.CharField(required=False, label="Note", max_length=500)


Action = Callable[[Any, HttpRequest, QuerySet[Any]], None]


class StateModelAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    """A `ModelAdmin` for a model that carries a machine (see the module's doc)."""

    change_form_template = "admin/statekit/change_form.html"
    action_form = LeverForm

    # -- what the machine gives -------------------------------------------------------

    @property
    def runner(self) -> Runner:
        """The Runner of the model's machine."""
        return host().runner_for(self.model)

    def permission(self, codename: str) -> str:
        """``<app_label>.<codename>_<model_name>`` of this admin's model."""
        opts = self.model._meta
        return f"{opts.app_label}.{codename}_{opts.model_name}"

    def can_fire(self, request: HttpRequest, event: str) -> bool:
        """Whether the user holds ``<app>.fire_<event>_<model>``."""
        return bool(_user(request).has_perm(self.permission(f"fire_{event}")))

    def fire(
        self,
        request: HttpRequest,
        obj: Any,
        event: str,
        *,
        idempotency_key: str | None = None,
        **payload: Any,
    ) -> TransitionRecord:
        """Fire `event` on `obj` as the request's user (the store writes the state,
        the fields the transition's actions changed and the history row at once).

        Raises:
            StatekitError: the machine refused, or another transition won the race;
                nothing is written.
        """
        return self.runner.fire(
            obj, event, actor=self.actor(request), idempotency_key=idempotency_key, **payload
        )

    @staticmethod
    def actor(request: HttpRequest) -> str:
        """Who acts, as the history records it: the user's username."""
        return str(request.user.get_username()) or "anonymous"

    # -- ModelAdmin hooks -------------------------------------------------------------

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        names = {f.name for f in self.model._meta.get_fields()}
        own = [f for f in super().get_readonly_fields(request, obj) if f not in STATE_FIELDS]
        return [*own, *(f for f in STATE_FIELDS if f in names)]

    def get_list_filter(self, request: HttpRequest) -> list[Any]:
        return [StateFilter, StuckFilter, *super().get_list_filter(request)]

    def get_actions(self, request: HttpRequest) -> dict[str, Any]:
        actions: dict[str, Any] = dict(super().get_actions(request))
        machine = self.runner.machine
        for event in machine.events:
            fields = panel_fields(machine, event)
            if any(field.required for field in fields) or not self.can_fire(request, event):
                continue  # a payload to type in: the change page's form
            name = f"statekit_fire_{event}"
            actions[name] = (_fire_action(event), name, f"Fire {event} on the selected")
        if _user(request).has_perm(self.permission("retry")):
            actions["statekit_retry"] = (
                _retry_action,
                "statekit_retry",
                "Retry dead-lettered compensations",
            )
        if _user(request).has_perm(self.permission("resolve")):
            actions["statekit_resolve"] = (
                _resolve_action,
                "statekit_resolve",
                "Resolve the selected stuck into the state given (with a note)",
            )
        return actions

    def get_urls(self) -> list[URLPattern]:
        opts = self.model._meta
        prefix = f"{opts.app_label}_{opts.model_name}_statekit"
        wrap = self.admin_site.admin_view
        return [
            path(
                "<path:object_id>/statekit/fire/<str:event>/",
                wrap(self.fire_view),
                name=f"{prefix}_fire",
            ),
            path("<path:object_id>/statekit/retry/", wrap(self.retry_view), name=f"{prefix}_retry"),
            path(
                "<path:object_id>/statekit/resolve/",
                wrap(self.resolve_view),
                name=f"{prefix}_resolve",
            ),
            *super().get_urls(),
        ]

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        context = dict(extra_context or {})
        obj = self.get_object(request, object_id)
        if obj is not None:
            context["statekit"] = self.panel(request, obj)
        return super().change_view(request, object_id, form_url, context)

    def panel(self, request: HttpRequest, obj: Any) -> Panel:
        """What the change page shows of `obj`'s machine."""
        opts = self.model._meta
        prefix = f"admin:{opts.app_label}_{opts.model_name}_statekit"
        pk = str(obj.pk)
        store = host().store
        return panel_of(
            self.runner,
            store if isinstance(store, Reads) else None,
            obj,
            can_fire=lambda event: self.can_fire(request, event),
            can_retry=_user(request).has_perm(self.permission("retry")),
            can_resolve=_user(request).has_perm(self.permission("resolve")),
            url=lambda what, *args: reverse(f"{prefix}_{what}", args=(pk, *args)),
            form_key=uuid.uuid4().hex,
        )

    # -- the change page's buttons ------------------------------------------------------

    def fire_view(self, request: HttpRequest, object_id: str, event: str) -> HttpResponse:
        """POST: fire `event` with the form's fields as payload."""
        obj, refused = self._posted(request, object_id)
        if refused is not None:
            return refused
        if not self.can_fire(request, event):
            messages.error(
                request,
                f"You may not fire {event!r}: it needs the permission "
                f"{self.permission(f'fire_{event}')}.",
            )
            return self._back(obj)
        keep = {"csrfmiddlewaretoken", "idempotency_key"}
        form = {k: v for k, v in request.POST.items() if k not in keep and v != ""}
        key = request.POST.get("idempotency_key") or None
        try:
            payload = payload_from(self.runner.machine, obj, event, form)
            record = self.fire(request, obj, event, idempotency_key=key, **payload)
        except StatekitError as exc:
            messages.error(request, str(exc))
        else:
            if record.replayed:
                messages.info(request, f"{event!r} was already applied (step {record.seq}).")
            else:
                messages.success(request, f"{event}: {record.source} → {record.target}")
        return self._back(obj)

    def retry_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """POST: give the instance's dead-lettered compensations more attempts."""
        obj, refused = self._posted(request, object_id, "retry")
        if refused is None:
            _retry(self, request, [obj])
        return refused or self._back(obj)

    def resolve_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """POST: move the stuck instance into the chosen state, with a note."""
        obj, refused = self._posted(request, object_id, "resolve")
        if refused is None:
            state = request.POST.get("state", "")
            _resolve(self, request, [obj], state, request.POST.get("note", ""))
        return refused or self._back(obj)

    def _posted(
        self, request: HttpRequest, object_id: str, lever: str | None = None
    ) -> tuple[Any, HttpResponse | None]:
        """The object of a lever's POST, or the response that refuses it."""
        if request.method != "POST":
            return None, HttpResponseNotAllowed(["POST"])
        obj = self.get_object(request, object_id)
        if obj is None:
            raise Http404(f"no {self.model._meta.verbose_name} {object_id!r}")
        if not self.has_view_or_change_permission(request, obj):
            raise PermissionDenied
        if lever is not None and not _user(request).has_perm(self.permission(lever)):
            messages.error(
                request, f"You may not {lever}: it needs the permission {self.permission(lever)}."
            )
            return obj, self._back(obj)
        return obj, None

    def _back(self, obj: Any) -> HttpResponse:
        opts = self.model._meta
        url = reverse(f"admin:{opts.app_label}_{opts.model_name}_change", args=(obj.pk,))
        return HttpResponseRedirect(url)


def _user(request: HttpRequest) -> PermissionsMixin | AnonymousUser:
    """The request's user (the admin's views are for logged-in staff)."""
    user = request.user
    assert isinstance(user, PermissionsMixin | AnonymousUser)
    return user


def _key(admin_: StateModelAdmin, obj: Any) -> str:
    """The instance's key as its machine stores it."""
    return admin_.runner.machine.key_of(obj) or str(obj.pk)


def panel_fields(machine: Machine, event: str) -> tuple[PayloadField, ...]:
    """The payload fields of `event` (`statekit.contrib.events`)."""
    return payload_fields(machine.payload_models.get(event))


def _fire_action(event: str) -> Action:
    def fire(admin_: StateModelAdmin, request: HttpRequest, queryset: QuerySet[Any]) -> None:
        done, refused = 0, []
        for obj in queryset:
            try:
                admin_.fire(request, obj, event)
            except StatekitError as exc:
                refused.append(str(exc))
            else:
                done += 1
        if done:
            messages.success(request, f"{event}: fired on {done} of {len(queryset)}.")
        for message in refused:
            messages.error(request, message)

    fire.__name__ = f"statekit_fire_{event}"
    return fire


def _retry_action(admin_: StateModelAdmin, request: HttpRequest, queryset: QuerySet[Any]) -> None:
    _retry(admin_, request, list(queryset))


def _resolve_action(admin_: StateModelAdmin, request: HttpRequest, queryset: QuerySet[Any]) -> None:
    post = request.POST
    _resolve(
        admin_, request, list(queryset), post.get("resolve_state", ""), post.get("resolve_note", "")
    )


def _retry(admin_: StateModelAdmin, request: HttpRequest, objects: list[Any]) -> None:
    sweeper = host().sweeper()
    name = admin_.runner.machine.name
    for obj in objects:
        try:
            record = sweeper.retry(name, _key(admin_, obj), actor=admin_.actor(request))
        except StatekitError as exc:
            messages.error(request, str(exc))
        else:
            note = (record.payload or {}).get("note", "retrying")
            messages.success(request, f"{name} {obj.pk}: {note}; the next sweep runs them.")


def _resolve(
    admin_: StateModelAdmin, request: HttpRequest, objects: list[Any], state: str, note: str
) -> None:
    sweeper = host().sweeper()
    name = admin_.runner.machine.name
    for obj in objects:
        try:
            record = sweeper.resolve(
                name, _key(admin_, obj), state, note=note, actor=admin_.actor(request)
            )
        except StatekitError as exc:
            messages.error(request, f"{name} {obj.pk}: {exc}")
        else:
            messages.success(request, f"{name} {obj.pk} resolved into {record.target}.")
