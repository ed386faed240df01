"""Locust load for bandvote, written the way the original system's clients
are: GET and POST tasks, both JSON vote shapes, posted to `/`, `/wasm`,
`/rust` and `/grpc` (the last through the gRPC client hop), with think time.

    pip install locust
    locust -f bench/locustfile.py --headless -u 50 -r 10 -t 1m --host http://127.0.0.1:8080

Locally `/grpc` is served by bandvote-grpc-client (:8083); set
BANDVOTE_GRPC_HOST=http://127.0.0.1:8083 to send those tasks there (in
Kubernetes the ingress routes every path itself). Only point it at hosts you run.
`tests/python/test_locust.py` (in scripts/test.sh) runs this file headless against
the real pipeline: 0 failures, and counted == POSTs acknowledged.
"""

import os
import random
import uuid

from locust import HttpUser, between, task

BANDS = [
    ("Alux Nahual", "Alux Nahual", "1983"),
    ("Bohemia Suburbana", "Fiebre", "1999"),
    ("Viernes Verde", "Viernes Verde", "2002"),
    ("Malacates Trebol Shop", "Niño Bonito", "2007"),
    ("Caifanes", "El Silencio", "1992"),
]
GRPC_HOST = os.environ.get("BANDVOTE_GRPC_HOST", "")


def name_shape():
    band, album, year = random.choice(BANDS)
    return {"name": band, "album": album, "year": year, "rank": str(random.randint(1, 10))}


def artist_shape():
    band, album, year = random.choice(BANDS)
    return {"album": album, "year": year, "artist": band, "ranked": f"{random.randint(1, 10):02d}"}


class Voter(HttpUser):
    wait_time = between(0.5, 2.0)

    def _post(self, path, body):
        url = (GRPC_HOST + path) if path.startswith("/grpc") and GRPC_HOST else path
        key = uuid.uuid4().hex
        with self.client.post(url, json=body, headers={"Idempotency-Key": key}, name=f"POST {path}", catch_response=True) as r:
            if r.status_code == 503:
                r.failure(f"overloaded, Retry-After {r.headers.get('Retry-After')}")
            elif r.status_code != 201:
                r.failure(f"{r.status_code}: {r.text[:200]}")

    @task(1)
    def status(self):
        self.client.get("/", name="GET /")

    @task(3)
    def vote_root(self):
        self._post("/", name_shape())

    @task(2)
    def vote_wasm(self):
        self._post("/wasm", artist_shape())

    @task(2)
    def vote_rust(self):
        self._post("/rust", name_shape())

    @task(2)
    def vote_grpc(self):
        self._post("/grpc", random.choice([name_shape, artist_shape])())
