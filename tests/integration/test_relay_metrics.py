"""The relay's metrics: prometheus_client's format on a separate, token-protected listener.

A scrape is parsed with prometheus_client's own parser; every family has its HELP and TYPE;
after a known exchange (one mailbox, FRAMES frames stored, delivered and acknowledged, one
refused subscription) the counters moved by exactly that much, the latency histograms
counted each commit and request, and the depth gauges saw the frames wait. A scrape without
the token, or with a wrong one, is refused.
"""

from __future__ import annotations

import asyncio
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from prometheus_client.parser import text_string_to_metric_families

from backchannel.proto import frames
from backchannel.proto.frames import FrameType

from support.figures import figure
from support.relay_clients import Mailbox, RawClient, binary
from support.relays import RelayProcess, metrics, run, start_relay

FRAMES = 25
TOKEN = "scrape-token-0123456789abcdef"


@pytest.fixture
def relay(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[RelayProcess]:
    monkeypatch.setenv("BACKCHANNEL_RELAY_METRICS_TOKEN", TOKEN)  # (inherited by the relay process)
    started = start_relay(tmp_path, args=("--metrics-listen", "127.0.0.1:0"))
    yield started
    started.stop()


def scrape(url: str, token: str | None = TOKEN) -> tuple[int, str]:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def histogram_counts(text: str, name: str) -> dict[str, float]:
    """``_count`` of a histogram, by its ``type`` label ("" when it has none)."""
    out = {}
    for family in text_string_to_metric_families(text):
        if family.name == name:
            for sample in family.samples:
                if sample.name == name + "_count":
                    out[sample.labels.get("type", "")] = sample.value
    return out


async def exchange(relay: RelayProcess, metrics_url: str) -> int:
    """One mailbox; FRAMES frames stored, delivered, acknowledged; one bad SUBSCRIBE; returns
    the frames-waiting gauge seen while the frames waited."""
    sender, receiver = await RawClient.open(relay.url), await RawClient.open(relay.url)
    box = await sender.create()
    assert isinstance(box, Mailbox)
    assert await sender.fill(box, FRAMES, 100) == FRAMES
    waiting = metrics(relay, metrics_url, TOKEN)["frames_waiting"]
    wrong_key = Ed25519PrivateKey.generate()
    signature = receiver.sign(wrong_key, FrameType.SUBSCRIBE, box.recv_id)
    refused = await receiver.request(frames.Subscribe(receiver.rid(), box.recv_id, signature))
    assert isinstance(refused, frames.Error)
    assert isinstance(await receiver.subscribe(box), frames.Ok)
    taken: list[bytes] = []
    async with asyncio.timeout(20):
        while len(taken) < FRAMES:
            frame = frames.decode(binary(await receiver.ws.recv()), 2**22)
            if isinstance(frame, frames.Deliver):
                taken.append(frame.msg_id)
    for msg_id in taken:
        assert isinstance(await receiver.request(frames.Ack(receiver.rid(), box.recv_id, msg_id)), frames.Ok)
    await sender.close()
    await receiver.close()
    return waiting


def test_metrics_are_prometheus_text_with_help_type_and_exact_counts(relay: RelayProcess) -> None:
    metrics_url = relay.metrics_url()
    assert metrics_url.startswith("http://127.0.0.1:")
    status, before_text = scrape(metrics_url)
    assert status == 200
    before = metrics(relay, metrics_url, TOKEN)
    waiting = run(exchange(relay, metrics_url), timeout=60)
    status, text = scrape(metrics_url)
    after = metrics(relay, metrics_url, TOKEN)

    families = list(text_string_to_metric_families(text))
    ours = [f for f in families if f.name.startswith("backchannel_relay_")]
    assert len(ours) > 40
    for family in ours:
        assert family.documentation and family.documentation != family.name, family.name
        assert f"# TYPE {family.name}" in text, family.name
    assert "# HELP backchannel_relay_stored_total " in text
    assert "# TYPE backchannel_relay_commit_seconds histogram" in text

    def moved(name: str) -> int:
        return after[name] - before.get(name, 0)

    assert moved("created") == 1
    assert moved("stored") == FRAMES
    assert moved("delivered") == FRAMES
    assert moved("acked") == FRAMES
    assert moved("refused{reason=auth_failed}") == 1 and moved("auth_failed") == 1
    assert moved("refused{reason=quota}") == 0
    assert waiting == FRAMES  # the depth gauge saw them wait
    assert after["frames_waiting"] == 0 and after["mailboxes"] == 1 and after["mailbox_depth_max"] == 0
    requests = histogram_counts(text, "backchannel_relay_request_seconds")
    old_requests = histogram_counts(before_text, "backchannel_relay_request_seconds")
    assert requests["send"] - old_requests.get("send", 0) == FRAMES
    assert requests["ack"] - old_requests.get("ack", 0) == FRAMES
    assert requests["create"] == 1 and requests["subscribe"] == 2
    commits = histogram_counts(text, "backchannel_relay_commit_seconds")[""]
    assert 1 <= commits == after["commits"]
    figure("relay metric families exposed", len(ours), "families")
    figure("commits counted by the commit-latency histogram", int(commits), "commits")


def test_the_metrics_listener_refuses_a_missing_or_wrong_token(relay: RelayProcess) -> None:
    url = relay.metrics_url()
    refused = [scrape(url, None)[0], scrape(url, "not-the-token-0123456789")[0]]
    figure("scrapes without the right metrics token refused", refused.count(401), "scrapes")
    assert refused == [401, 401]
    assert scrape(url)[0] == 200
    assert scrape(relay.http_url + "/metrics")[0] == 404  # not on the relay's own port
    assert TOKEN not in relay.stderr_text()
