"""Locust load for the bandvote HTTP intake: both vote shapes real clients send,
posted to `/`, with realistic think time and an Idempotency-Key per vote.

    pip install locust
    locust -f bench/locustfile.py --headless -u 50 -r 10 -t 1m --host http://127.0.0.1:8080

Only point it at hosts you run (loopback or your own cluster).
"""

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


class Voter(HttpUser):
    wait_time = between(0.5, 2.0)

    def _post(self, body):
        key = uuid.uuid4().hex
        with self.client.post("/", json=body, headers={"Idempotency-Key": key}, name="POST /", catch_response=True) as r:
            if r.status_code == 503:
                r.failure(f"overloaded, Retry-After {r.headers.get('Retry-After')}")
            elif r.status_code != 201:
                r.failure(f"{r.status_code}: {r.text[:200]}")

    @task(3)
    def vote_name_shape(self):
        band, album, year = random.choice(BANDS)
        self._post({"name": band, "album": album, "year": year, "rank": str(random.randint(1, 10))})

    @task(2)
    def vote_artist_shape(self):
        band, album, year = random.choice(BANDS)
        self._post({"album": album, "year": year, "artist": band, "ranked": f"{random.randint(1, 10):02d}"})
