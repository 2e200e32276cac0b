"""The Kubernetes connection: kubeconfig / in-cluster login, raw object CRUD, retries.

The only module that imports the ``kubernetes`` client (lazily, inside functions). Core
objects go through their typed APIs (CoreV1, AppsV1, AutoscalingV2, PolicyV1, NetworkingV1),
Istio objects through the custom-objects API; every call exchanges plain JSON dicts
(``_preload_content=False``) so planners never see client model classes.

Transient API errors — 409 conflicts, 429, 5xx, timeouts and dropped connections — are
retried with exponential backoff and jitter by ``tenacity`` (a well-kept retry library;
the client's own urllib3 retries are switched off so one policy decides). Other errors
become :class:`KubeError` with the server's message.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from mlops_sessions.errors import StepError
from mlops_sessions.planning.deploy_plan import Manifest, ObjectRef

T = TypeVar("T")

RETRYABLE_STATUS = frozenset({409, 429, 500, 502, 503, 504})

# kind -> (typed API class, method stem); everything else in this table is namespaced.
TYPED: dict[str, tuple[str, str]] = {
    "ServiceAccount": ("CoreV1Api", "namespaced_service_account"),
    "ConfigMap": ("CoreV1Api", "namespaced_config_map"),
    "Secret": ("CoreV1Api", "namespaced_secret"),
    "Service": ("CoreV1Api", "namespaced_service"),
    "Deployment": ("AppsV1Api", "namespaced_deployment"),
    "HorizontalPodAutoscaler": ("AutoscalingV2Api", "namespaced_horizontal_pod_autoscaler"),
    "PodDisruptionBudget": ("PolicyV1Api", "namespaced_pod_disruption_budget"),
    "NetworkPolicy": ("NetworkingV1Api", "namespaced_network_policy"),
    "Lease": ("CoordinationV1Api", "namespaced_lease"),  # the deploy lock, never rendered
}
# kind -> plural, for objects served through the custom-objects API (Istio).
CUSTOM_PLURALS: dict[str, str] = {
    "VirtualService": "virtualservices",
    "DestinationRule": "destinationrules",
}
FIELD_MANAGER = "mlops-sessions"


class KubeError(StepError):
    """An API call failed for good (after retries, or with a non-transient status)."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class RetryPolicy:
    """How hard to retry a transient API error: attempts and the backoff range (seconds)."""

    attempts: int = 6
    initial: float = 0.5
    maximum: float = 8.0
    request_timeout: float = 15.0


def _is_transient(exc: BaseException) -> bool:
    from kubernetes.client.exceptions import ApiException
    from urllib3.exceptions import HTTPError

    if isinstance(exc, ApiException):
        return exc.status in RETRYABLE_STATUS
    return isinstance(exc, (HTTPError, TimeoutError, ConnectionError))


def _describe(exc: BaseException) -> str:
    from kubernetes.client.exceptions import ApiException

    if isinstance(exc, ApiException):
        message = exc.reason or ""
        try:
            body = json.loads(exc.body or "{}")
            message = str(body.get("message") or message)
        except (TypeError, ValueError):
            pass
        return f"HTTP {exc.status}: {message}"
    return f"{type(exc).__name__}: {exc}"


class Cluster:
    """One Kubernetes API endpoint with a login, a default namespace and a retry policy."""

    def __init__(
        self,
        api_client: Any,
        *,
        context: str,
        namespace: str,
        server: str,
        policy: RetryPolicy | None = None,
    ) -> None:
        self.api_client = api_client
        self.context = context
        self.namespace = namespace
        self.server = server
        self.policy = policy or RetryPolicy()

    # --- retries ------------------------------------------------------------------------
    def call(self, what: str, fn: Callable[[], T]) -> T:
        """Run one API call under the retry policy; give up with a KubeError naming what."""
        import tenacity

        retrying = tenacity.Retrying(
            stop=tenacity.stop_after_attempt(self.policy.attempts),
            # Doubling from `initial` up to `maximum`, plus up to `initial` of jitter so
            # that several clients do not retry in lock-step.
            wait=tenacity.wait_exponential(multiplier=self.policy.initial, max=self.policy.maximum)
            + tenacity.wait_random(0, self.policy.initial),
            retry=tenacity.retry_if_exception(_is_transient),
            reraise=True,
        )
        try:
            return retrying(fn)
        except Exception as exc:
            from kubernetes.client.exceptions import ApiException

            status = exc.status if isinstance(exc, ApiException) else None
            if isinstance(exc, ValueError) and not isinstance(exc, ApiException):
                # The client validates bodies against the API's models before sending;
                # an undecodable answer lands here too.
                raise KubeError(f"{what} failed: {exc}") from exc
            if not _is_transient(exc) and status is None:
                raise
            tries = f" after {self.policy.attempts} attempts" if _is_transient(exc) else ""
            raise KubeError(f"{what} failed{tries}: {_describe(exc)}", status) from exc

    # --- object access ------------------------------------------------------------------
    def _api(self, kind: str) -> tuple[Any, str]:
        from kubernetes import client

        if kind in TYPED:
            cls_name, stem = TYPED[kind]
            return getattr(client, cls_name)(self.api_client), stem
        if kind in CUSTOM_PLURALS:
            return client.CustomObjectsApi(self.api_client), ""
        raise StepError(f"mlops deploy cannot apply objects of kind {kind!r}")

    def _opts(self) -> dict[str, Any]:
        return {"_preload_content": False, "_request_timeout": self.policy.request_timeout}

    @staticmethod
    def _json(response: Any) -> Manifest:
        data = json.loads(response.data or b"{}")
        return data if isinstance(data, dict) else {}

    def _invoke(self, verb: str, key: ObjectRef, *rest: Any, named: bool = True, **kw: Any) -> Any:
        """Call verb on key's kind through whichever client serves it.

        Typed APIs take ``[name,] namespace, *rest`` (``read_namespaced_service``);
        CustomObjectsApi takes ``group, version, namespace, plural, [name,] *rest`` and says
        ``get`` where the typed APIs say ``read``. Only the arguments' order differs.
        """
        api, stem = self._api(key.kind)
        namespace = key.namespace or self.namespace
        name = (key.name,) if named else ()
        if stem:
            return getattr(api, f"{verb}_{stem}")(*name, namespace, *rest, **kw)
        group, version = _group_version(key.api_version)
        method = getattr(api, f"{'get' if verb == 'read' else verb}_namespaced_custom_object")
        return method(group, version, namespace, CUSTOM_PLURALS[key.kind], *name, *rest, **kw)

    def get(self, key: ObjectRef) -> Manifest | None:
        """The live object, or None when it does not exist."""
        from kubernetes.client.exceptions import ApiException

        def fetch() -> Manifest | None:
            try:
                resp = self._invoke("read", key, **self._opts())
            except ApiException as exc:
                if exc.status == 404:
                    return None
                raise
            return self._json(resp)

        return self.call(f"reading {key}", fetch)

    def create(self, obj: Manifest) -> Manifest:
        """Create obj; if it turns out to exist (a lost response to an earlier try), patch it."""
        from kubernetes.client.exceptions import ApiException

        from mlops_sessions.planning.deploy_plan import ref

        key = ref(obj, self.namespace)

        def post() -> Manifest | None:
            try:
                resp = self._invoke(
                    "create", key, obj, named=False, field_manager=FIELD_MANAGER, **self._opts()
                )
            except ApiException as exc:
                # 409 on create: the object exists (AlreadyExists; also when an earlier
                # try's answer was lost). Not worth retrying the POST: patch it instead.
                if exc.status == 409:
                    return None
                raise
            return self._json(resp)

        created = self.call(f"creating {key}", post)
        if created is None:
            return self.patch(key, obj)
        return created

    def patch(self, key: ObjectRef, patch: Manifest) -> Manifest:
        """Apply a JSON merge patch (RFC 7386) to one object."""
        opts = {**self._opts(), "_content_type": "application/merge-patch+json"}

        def send() -> Manifest:
            return self._json(
                self._invoke("patch", key, patch, field_manager=FIELD_MANAGER, **opts)
            )

        return self.call(f"patching {key}", send)

    def raw_create(self, key: ObjectRef, obj: Manifest) -> Manifest:
        """One create call, no retry and no "exists, so patch": a 409 reaches the caller."""
        return self._json(
            self._invoke(
                "create", key, obj, named=False, field_manager=FIELD_MANAGER, **self._opts()
            )
        )

    def delete(self, key: ObjectRef) -> None:
        """Delete one object; an object already gone is fine."""
        from kubernetes.client.exceptions import ApiException

        def remove() -> None:
            try:
                self._invoke("delete", key, **self._opts())
            except ApiException as exc:
                if exc.status != 404:
                    raise

        self.call(f"deleting {key}", remove)

    def ping(self) -> str:
        """The server's version (GET /version); raises ClusterUnreachable when none answers."""
        from kubernetes.client.exceptions import ApiException

        def version() -> Manifest:
            request = self.api_client.param_serialize(
                "GET",
                "/version",
                header_params={"Accept": "application/json"},
                auth_settings=["BearerToken"],
            )
            response = self.api_client.call_api(
                *request, _request_timeout=self.policy.request_timeout
            )
            response.read()
            if response.status >= 400:
                raise ApiException(http_resp=response)
            return self._json(response)

        try:
            found = self.call("asking the API server for its version", version)
        except KubeError as exc:
            raise ClusterUnreachable(self.context, self.server, str(exc)) from exc
        return str(found.get("gitVersion", "?"))


class ClusterUnreachable(StepError):
    def __init__(self, context: str, server: str, why: str) -> None:
        super().__init__(
            f"no Kubernetes cluster reachable (context {context!r}, server {server}): {why}\n"
            "    hint: check `kubectl --context "
            f"{context} get ns`, set deploy.context in mlops.yaml, or run `mlops render` "
            "to write the manifests offline"
        )


def _group_version(api_version: str) -> tuple[str, str]:
    group, _, version = api_version.rpartition("/")
    return group, version


def connect(
    context: str | None,
    namespace: str | None,
    *,
    kubeconfig: str | None = None,
    policy: RetryPolicy | None = None,
) -> Cluster:
    """Log in from a kubeconfig (KUBECONFIG, ~/.kube/config) or, inside a pod, in-cluster.

    ``context`` is deploy.context (None: the kubeconfig's current context). The namespace
    is deploy.namespace, else the context's namespace, else ``default``. Raises a StepError
    that points at ``mlops render`` when no cluster login can be found.
    """
    from kubernetes import client
    from kubernetes import config as kube_config
    from kubernetes.config.config_exception import ConfigException

    config: Any = kube_config  # untyped module: one Any at the boundary
    configuration = client.Configuration()
    path = kubeconfig or os.environ.get("KUBECONFIG") or os.path.expanduser("~/.kube/config")
    context_namespace: str | None = None
    try:
        if os.path.exists(path.split(os.pathsep)[0]) or context is not None:
            config.load_kube_config(
                config_file=path,
                context=context,
                client_configuration=configuration,
                persist_config=False,
            )
            contexts, current = config.list_kube_config_contexts(config_file=path)
            chosen: dict[str, Any] = next(
                (c for c in contexts if c["name"] == (context or current["name"])), {}
            )
            context_namespace = (chosen.get("context") or {}).get("namespace")
            context_name = context or str(current["name"])
        else:
            config.load_incluster_config(client_configuration=configuration)
            context_name = "in-cluster"
            context_namespace = _incluster_namespace()
    except (ConfigException, OSError, KeyError, TypeError) as exc:
        raise StepError(
            f"no Kubernetes login found ({exc}); set KUBECONFIG or ~/.kube/config "
            f"{'with context ' + repr(context) if context else ''}, run inside a cluster, "
            "or use `mlops render` to write the manifests offline"
        ) from exc
    # One retry policy (tenacity) decides; urllib3 must not retry underneath it.
    configuration.retries = 0
    api_client = client.ApiClient(configuration)
    return Cluster(
        api_client,
        context=context_name,
        namespace=namespace or context_namespace or "default",
        server=str(configuration.host),
        policy=policy,
    )


def _incluster_namespace() -> str | None:
    path = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read().strip() or None
    except OSError:
        return None
