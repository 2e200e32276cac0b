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
    "Job": ("BatchV1Api", "namespaced_job"),  # training on the cluster (executors.kube.job)
}
# kind -> plural, for objects served through the custom-objects API (Istio, Kubeflow).
CUSTOM_PLURALS: dict[str, str] = {
    "VirtualService": "virtualservices",
    "DestinationRule": "destinationrules",
    "TFJob": "tfjobs",  # Kubeflow's, training with train.operator: tfjob (executors.kube.tfjob)
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
        if exc.status == 403:
            # The API server's message already names the user, verb, resource and namespace.
            message += (
                "; grant it with the Role `mlops render` writes to rbac/<namespace>-"
                "mlops-deployer.yaml (applied once by an admin), or use an identity that has it"
            )
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


class KubeconfigError(StepError):
    """The kubeconfig is missing, unreadable or malformed: one line naming the file and fix."""

    def __init__(self, message: str) -> None:
        # Names and paths come from the user's files: never let one break the line.
        super().__init__(" ".join(message.split()))


def _one_line(text: object) -> str:
    return " ".join(str(text).split())[:300]


def kubeconfig_paths(kubeconfig: str | None) -> tuple[list[str], str]:
    """The kubeconfig files to read and where that choice came from.

    ``--kubeconfig`` wins, then ``$KUBECONFIG`` (a list, like kubectl's), then
    ``~/.kube/config``. An empty list means no file: in-cluster login, and only inside a pod.
    A path that was named (option or variable) and does not exist is an error, never a
    silent fall-back to other credentials: that is how a deploy lands on the wrong cluster.
    """
    if kubeconfig is not None:
        named, source = [kubeconfig], "--kubeconfig"
    elif os.environ.get("KUBECONFIG"):
        named = [p for p in os.environ["KUBECONFIG"].split(os.pathsep) if p]
        source = "$KUBECONFIG"
    else:
        default = os.path.expanduser("~/.kube/config")
        if os.path.exists(default):
            return [default], "~/.kube/config"
        if os.environ.get("KUBERNETES_SERVICE_HOST"):
            return [], "in-cluster"
        raise KubeconfigError(
            f"no Kubernetes login found: {default} does not exist and this is not a pod; pass "
            "--kubeconfig PATH or set KUBECONFIG, or use `mlops render` to write the "
            "manifests offline"
        )
    missing = [p for p in named if not os.path.isfile(p)]
    if not named or missing:
        shown = missing[0] if missing else "(empty)"
        raise KubeconfigError(
            f"no Kubernetes login found: kubeconfig {shown} (from {source}) does not exist or "
            f"is not a file; fix the path in {source} (nothing falls back to other "
            "credentials), or use `mlops render` to write the manifests offline"
        )
    return named, source


def _read_kubeconfig(path: str) -> dict[str, Any]:
    """One kubeconfig file as a mapping; KubeconfigError (one line) if it is not one."""
    import yaml

    fix = f"fix {path} (`kubectl config view --kubeconfig {path}` shows what kubectl reads)"
    try:
        with open(path, "rb") as handle:
            raw = handle.read()
        text = raw.decode("utf-8")
        document = yaml.safe_load(text)
    except OSError as exc:
        raise KubeconfigError(f"cannot read kubeconfig {path}: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise KubeconfigError(
            f"kubeconfig {path} is not UTF-8 text (byte {exc.start}); {fix}"
        ) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or type(exc).__name__
        raise KubeconfigError(
            f"kubeconfig {path} is not valid YAML{where} ({_one_line(problem)}); {fix}"
        ) from None
    if document is None:
        return {}
    if not isinstance(document, dict):
        raise KubeconfigError(
            f"kubeconfig {path} is a YAML {type(document).__name__}, not a mapping with "
            f"clusters, contexts and users; {fix}"
        )
    for key in ("clusters", "contexts", "users"):
        entries = document.get(key)
        if entries is None:
            continue
        if not isinstance(entries, list) or not all(
            isinstance(e, dict) and isinstance(e.get("name"), str) and e.get("name")
            for e in entries
        ):
            raise KubeconfigError(
                f"kubeconfig {path}: '{key}' must be a list of entries with a 'name'; {fix}"
            )
    current = document.get("current-context")
    if current is not None and not isinstance(current, str):
        raise KubeconfigError(f"kubeconfig {path}: 'current-context' must be a name; {fix}")
    return document


def _merged(paths: list[str]) -> dict[str, Any]:
    """kubectl's merge of several files: the first definition of a name wins."""
    merged: dict[str, Any] = {"clusters": {}, "contexts": {}, "users": {}, "current-context": ""}
    for path in paths:
        document = _read_kubeconfig(path)
        for key in ("clusters", "contexts", "users"):
            for entry in document.get(key) or []:
                merged[key].setdefault(entry["name"], (path, entry))
        if not merged["current-context"] and document.get("current-context"):
            merged["current-context"] = document["current-context"]
    return merged


def resolve_context(paths: list[str], pinned: str | None) -> tuple[str, str | None]:
    """The context to use and its namespace, checked to be complete before any login.

    ``pinned`` is deploy.context: the deploy goes to that context or nowhere. A kubeconfig
    without it is refused naming both the pinned and the current context.
    """
    merged = _merged(paths)
    files = ", ".join(paths)
    current = merged["current-context"]
    name = pinned or current
    known = sorted(merged["contexts"])
    if not name:
        raise KubeconfigError(
            f"kubeconfig {files} sets no current-context; set deploy.context in mlops.yaml "
            f"or run `kubectl config use-context NAME` (contexts: {', '.join(known) or 'none'})"
        )
    if name not in merged["contexts"]:
        if pinned:
            raise KubeconfigError(
                f"deploy.context pins context {pinned!r}, but kubeconfig {files} has no such "
                f"context (current context: {current or 'none'!r}; contexts: "
                f"{', '.join(known) or 'none'}); refusing to deploy to another cluster: "
                "point --kubeconfig/KUBECONFIG at the right file or fix deploy.context"
            )
        raise KubeconfigError(
            f"kubeconfig {files}: current-context {name!r} is not among its contexts "
            f"({', '.join(known) or 'none'}); run `kubectl config use-context NAME`"
        )
    path, entry = merged["contexts"][name]
    body = entry.get("context")
    if not isinstance(body, dict) or not isinstance(body.get("cluster"), str):
        raise KubeconfigError(
            f"kubeconfig {path}: context {name!r} names no cluster; add 'context: "
            "{cluster: NAME, user: NAME}' to it"
        )
    cluster_name = body["cluster"]
    if cluster_name not in merged["clusters"]:
        defined = ", ".join(sorted(merged["clusters"])) or "none"
        raise KubeconfigError(
            f"kubeconfig {path}: context {name!r} names cluster {cluster_name!r}, which is "
            f"not defined under 'clusters' (defined: {defined}); add it or fix the context"
        )
    cluster_path, cluster = merged["clusters"][cluster_name]
    server = (cluster.get("cluster") or {}) if isinstance(cluster.get("cluster"), dict) else None
    if not server or not isinstance(server.get("server"), str) or not server["server"]:
        raise KubeconfigError(
            f"kubeconfig {cluster_path}: cluster {cluster_name!r} has no 'server' URL; add "
            "'cluster: {server: https://HOST:6443}' to it"
        )
    user = body.get("user")
    if user is not None and (not isinstance(user, str) or user not in merged["users"]):
        raise KubeconfigError(
            f"kubeconfig {path}: context {name!r} names user {user!r}, which is not defined "
            "under 'users'; add it or fix the context"
        )
    namespace = body.get("namespace")
    return name, namespace if isinstance(namespace, str) and namespace else None


def connect(
    context: str | None,
    namespace: str | None,
    *,
    kubeconfig: str | None = None,
    policy: RetryPolicy | None = None,
) -> Cluster:
    """Log in from a kubeconfig (--kubeconfig, KUBECONFIG, ~/.kube/config) or, in a pod, in-cluster.

    ``context`` is deploy.context (None: the kubeconfig's current context); when set, it
    pins the cluster: no other context is ever used. The namespace is deploy.namespace,
    else the context's namespace, else ``default``. Every problem with the login — a named
    file that does not exist, a malformed file, a missing context — is a one-line
    :class:`KubeconfigError` naming the file and the fix.
    """
    from kubernetes import client
    from kubernetes import config as kube_config

    config: Any = kube_config  # untyped module: one Any at the boundary
    configuration = client.Configuration()
    paths, source = kubeconfig_paths(kubeconfig)
    if paths:
        context_name, context_namespace = resolve_context(paths, context)
        try:
            config.load_kube_config(
                config_file=os.pathsep.join(paths),
                context=context_name,
                client_configuration=configuration,
                persist_config=False,
            )
        except Exception as exc:  # the client's loader: certificates, exec plugins, tokens
            raise KubeconfigError(
                f"cannot log in with context {context_name!r} of kubeconfig "
                f"{', '.join(paths)} (from {source}): {_one_line(exc)}; fix that file"
            ) from None
    else:
        if context is not None:
            raise KubeconfigError(
                f"deploy.context pins context {context!r}, but there is no kubeconfig "
                "(~/.kube/config does not exist) and the only login here is this pod's "
                "in-cluster service account (context 'in-cluster'); refusing to deploy to "
                "another cluster: pass --kubeconfig or set KUBECONFIG"
            )
        try:
            config.load_incluster_config(client_configuration=configuration)
        except Exception as exc:
            raise KubeconfigError(
                f"no Kubernetes login found: in-cluster credentials failed ({_one_line(exc)}); "
                "pass --kubeconfig PATH or set KUBECONFIG"
            ) from None
        context_name = "in-cluster"
        context_namespace = _incluster_namespace()
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
