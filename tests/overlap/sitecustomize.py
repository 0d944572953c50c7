"""Put on PYTHONPATH by tests that prove several workers share a study: with
``GANARCH_TEST_OVERLAP=STORAGE`` and ``GANARCH_TEST_OVERLAP_STUDY=NAME`` set, each process's
first trial waits (up to 5 minutes) until
trials of two worker processes are running at once, then trains as usual. So "both workers ran
trials" holds however slowly a loaded machine starts the second worker, and a search that
never starts a second worker still fails the test (the wait ends and one pid is seen)."""

import os

if os.environ.get("GANARCH_TEST_OVERLAP"):
    import time

    from ganarch.search import engine, storage

    _train = engine.Engine.train
    _waited = []

    def _running_pids(url: str, name: str) -> set:
        store = storage.open_storage(url)
        pids = set()
        for t in store.get_all_trials(store.get_study_id_from_name(name), deepcopy=False):
            worker = t.user_attrs.get(storage.WORKER_ATTR)
            if t.state.name == "RUNNING" and isinstance(worker, dict):
                pids.add(worker.get("pid"))
        return pids

    def train(self, spec, **kw):
        if not _waited:
            _waited.append(True)
            deadline = time.monotonic() + 300
            url, name = os.environ["GANARCH_TEST_OVERLAP"], os.environ["GANARCH_TEST_OVERLAP_STUDY"]
            while len(_running_pids(url, name)) < 2 and time.monotonic() < deadline:
                time.sleep(0.2)
        return _train(self, spec, **kw)

    engine.Engine.train = train
