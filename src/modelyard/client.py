"""``modelyard.Client``: the server's REST API from Python (httpx).

>>> client = Client("http://127.0.0.1:8080")  # doctest: +SKIP
>>> client.predict("churn", [[0.3, 1.2]])       # doctest: +SKIP
{'predict': array([1]), 'predict_proba': array([[0.2, 0.8]])}
>>> client.feedback([{"id": client.last_request_id, "label": 1}])  # doctest: +SKIP
{'accepted': 1, 'duplicates': 0, 'unknown_ids': [], 'deferred': False}

Errors the server answers (4xx/5xx with ``{"error": ...}``) are raised as
:class:`ServerError` carrying the status and the server's message.
"""

from __future__ import annotations

from typing import Any

import httpx
import numpy as np

from modelyard.errors import ModelyardError
from modelyard.types import datatype_of, numpy_dtype


class ServerError(ModelyardError):
    """The server refused or failed a call: ``status`` (0 when it could not be reached) and
    its one-line ``message``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status
        self.message = message


class Client:
    """A connection to ``modelyard serve`` (one pooled httpx client; close it, or use ``with``).

    ``token`` is sent as ``Authorization: Bearer`` for servers behind authentication.
    """

    def __init__(self, url: str, token: str | None = None, timeout: float = 30.0) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.Client(base_url=url.rstrip("/"), headers=headers, timeout=timeout)
        self.last_request_id: str | None = None
        self.last_version: str | None = None  # the version that answered the last predict
        self._input_names: dict[str, str] = {}

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            answer = self._http.request(method, path, **kwargs)
        except httpx.TransportError as error:
            raise ServerError(0, f"cannot reach {self._http.base_url}: {error}") from None
        self.last_request_id = answer.headers.get("x-request-id", self.last_request_id)
        if answer.status_code >= 400:
            try:
                message = answer.json().get("error", answer.text)
            except ValueError:
                message = answer.text or answer.reason_phrase
            raise ServerError(answer.status_code, str(message))
        return answer.json() if answer.content else None

    def ready(self) -> bool:
        """Whether every model version is loaded (``/v2/health/ready``)."""
        try:
            return self._http.get("/v2/health/ready").status_code == 200
        except httpx.TransportError:
            return False

    def metadata(self, model: str) -> dict[str, Any]:
        """The model's Open Inference Protocol metadata (inputs, outputs, versions)."""
        result: dict[str, Any] = self._call("GET", f"/v2/models/{model}")
        return result

    def predict(self, model: str, rows: Any, outputs: list[str] | None = None,
                request_id: str | None = None) -> dict[str, np.ndarray]:
        """Run ``model`` (a name, ``name@alias``) on a 2-D table of numbers; every output (or
        the named ones) as numpy arrays. The request id is in :attr:`last_request_id`, the
        version that answered (a rollout may route to either) in :attr:`last_version`."""
        array = np.asarray(rows)
        if array.ndim == 1:
            array = array.reshape(1, -1)
        name = self._input_names.get(model)
        if name is None:  # asked once per model and client: the input's name
            meta = self.metadata(model)
            name = meta["inputs"][0]["name"] if meta.get("inputs") else "input"
            self._input_names[model] = name
        body: dict[str, Any] = {"inputs": [{
            "name": name, "datatype": datatype_of(array.dtype), "shape": list(array.shape),
            "data": array.ravel().tolist(),
        }]}
        if outputs:
            body["outputs"] = [{"name": output} for output in outputs]
        if request_id is not None:
            body["id"] = request_id
        answer = self._call("POST", f"/v2/models/{model}/infer", json=body)
        self.last_request_id = answer.get("id", self.last_request_id)
        self.last_version = answer.get("model_version")
        return {
            out["name"]: np.asarray(out["data"], dtype=numpy_dtype(out["datatype"]))
            .reshape(out["shape"])
            for out in answer["outputs"]
        }

    def feedback(self, labels: list[dict[str, Any]]) -> dict[str, Any]:
        """Delayed labels ``[{"id": request id, "label": ...}]`` (idempotent)."""
        result: dict[str, Any] = self._call("POST", "/v1/feedback", json=labels)
        return result

    def monitoring(self, model: str, since: str | None = "24h") -> list[dict[str, Any]]:
        """The monitor's window results for ``model``, oldest first."""
        params = {"since": since} if since else {}
        answer = self._call("GET", f"/api/v1/models/{model}/monitoring", params=params)
        windows: list[dict[str, Any]] = answer["windows"]
        return windows

    # -- rollouts ----------------------------------------------------------------------------

    def rollout(self, model: str) -> dict[str, Any] | None:
        """The model's active (else latest) rollout with its recent events, or None."""
        answer = self._call("GET", f"/api/v1/models/{model}/rollout")
        found: dict[str, Any] | None = answer["rollout"]
        return found

    def start_rollout(self, model: str, candidate: int, **spec: Any) -> dict[str, Any]:
        """Start rolling ``candidate`` out: ``strategy``, ``steps``, ``step_duration``,
        ``analysis``, ``sticky``, ``baseline`` as the admin API takes them."""
        answer = self._call("POST", f"/api/v1/models/{model}/rollout",
                            json={"candidate": candidate, **spec})
        started: dict[str, Any] = answer["rollout"]
        return started

    def steer_rollout(self, model: str, action: str, reason: str | None = None) -> dict[str, Any]:
        """``promote``, ``pause``, ``resume``, ``rollback`` or ``abort`` the active rollout."""
        answer = self._call("POST", f"/api/v1/models/{model}/rollout/{action}",
                            json={"reason": reason} if reason else None)
        done: dict[str, Any] = answer["rollout"]
        return done

    # -- retraining --------------------------------------------------------------------------

    def retrain(self, model: str, reason: str | None = None) -> dict[str, Any]:
        """Start a retrain of ``model`` on the server (it runs in the background); the begun
        run. Follow it with :meth:`retrain_runs`."""
        body = {"reason": reason} if reason else None
        answer = self._call("POST", f"/api/v1/models/{model}/retrain", json=body)
        run: dict[str, Any] = answer["run"]
        return run

    def retrain_plan(self, model: str) -> dict[str, Any]:
        """What a retrain of ``model`` would do now (a dry run; nothing changes)."""
        answer = self._call("POST", f"/api/v1/models/{model}/retrain", json={"dry_run": True})
        plan: dict[str, Any] = answer["plan"]
        return plan

    def retrain_runs(self, model: str) -> list[dict[str, Any]]:
        """The model's recent retraining runs, newest first."""
        answer = self._call("GET", f"/api/v1/models/{model}/retrain")
        runs: list[dict[str, Any]] = answer["runs"]
        return runs

    def approve(self, model: str, run: int | None = None, decline: bool = False,
                reason: str | None = None) -> dict[str, Any]:
        """Start the rollout of a candidate awaiting approval (or ``decline`` it)."""
        body: dict[str, Any] = {"decline": decline}
        if run is not None:
            body["run"] = run
        if reason:
            body["reason"] = reason
        answer = self._call("POST", f"/api/v1/models/{model}/retrain/approve", json=body)
        done: dict[str, Any] = answer["run"]
        return done
