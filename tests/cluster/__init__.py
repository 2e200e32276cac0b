"""A real Kubernetes control plane for the tests, on loopback.

``kube-apiserver``, ``kube-controller-manager`` and ``kube-scheduler`` are built from the
``k8s.io/kubernetes`` Go module at the release pinned in ``k8s/go.mod``; etcd from
``go.etcd.io/etcd/server/v3`` at the release pinned in ``etcd/go.mod``; KWOK
(``sigs.k8s.io/kwok``) plays the kubelets of a CPU node and a GPU node, so pods are
scheduled, become Running and Ready, and Deployments really roll out. Istio's networking
CRDs and the Kubeflow TFJob CRD are installed from their published Go modules.

Built once into ``~/.cache/mlops-sessions/`` (keyed by version) and reused; started by
``python -m tests.cluster up`` or by the session fixture ``kube_cluster`` in
``tests/kube/conftest.py``. See ``docs/testing.md``.
"""
