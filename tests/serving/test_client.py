"""``modelyard.Client`` against a real server: predict, feedback, monitoring, clear errors."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.datasets import load_breast_cancer

import modelyard
from modelyard.client import ServerError

from .conftest import LiveServer


@pytest.mark.slow
def test_the_client_predicts_posts_labels_and_reads_monitoring(live_server: LiveServer) -> None:
    X, y = load_breast_cancer(return_X_y=True)
    with modelyard.Client(live_server.url) as client:
        assert client.ready()
        answer = client.predict("cancer", X[:3], request_id="client-test-1")
        assert client.last_request_id == "client-test-1"
        assert answer["predict"].shape == (3,)
        assert answer["predict_proba"].shape == (3, 2)
        np.testing.assert_allclose(answer["predict_proba"].sum(axis=1), 1.0)
        only = client.predict("cancer", X[0], outputs=["predict_proba"])
        assert list(only) == ["predict_proba"]
        posted = client.feedback([{"id": "client-test-1", "label": y[:3].tolist()}])
        assert posted["accepted"] + posted["duplicates"] == 1
        assert isinstance(client.monitoring("cancer", since="1h"), list)
        with pytest.raises(ServerError, match="404") as missing:
            client.predict("no-such-model", X[:1])
        assert "no-such-model" in missing.value.message
        with pytest.raises(ServerError, match="400"):
            client.feedback([{"label": 1}])
    assert not modelyard.Client("http://127.0.0.1:9").ready()
