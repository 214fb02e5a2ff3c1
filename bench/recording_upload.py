"""What the agent's recording upload costs: an hour-long call's WAV (8 kHz mono, as MixMonitor writes it)
hashed and streamed with the agent's own ``put_file`` to a pre-signed SigV4 ``PUT`` signed with its SHA-256
(``x-amz-checksum-sha256``) on moto server (loopback), then hashed back by streaming as the cloud checks it,
and, when Debian's ``lame`` is installed, its MP3 conversion. Figures: MB/s, the Python heap's peak during the
upload (tracemalloc), the process's max RSS, conversion speed against real time.

moto server runs in a process of its own (it keeps objects in memory, which must not count as the agent's) and
is no S3; the upload figure is the agent's side on loopback, a ceiling for a real line (which is what bounds an
upload in practice).

Run: ``python -m bench.recording_upload [--minutes 60]``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import tracemalloc
import wave
from pathlib import Path

import boto3  # type: ignore[import-untyped]
import httpx
from botocore.config import Config  # type: ignore[import-untyped]

from edge_agent.recordings.files import prepare, size_and_sha256
from edge_agent.recordings.settings import RecordingsSettings
from edge_agent.recordings.upload import put_file

BUCKET = "bench-recordings"


def write_wav(path: Path, minutes: float) -> None:
    second = bytes((n * 31) % 251 for n in range(16000))  # 8 kHz, 16-bit, mono: 16,000 bytes a second
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(8000)
        for _ in range(int(minutes * 60)):
            out.writeframes(second)


def max_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


async def upload(url: str, headers: dict[str, str], path: Path, size: int) -> tuple[float, int]:
    async with httpx.AsyncClient(timeout=httpx.Timeout(600.0, connect=10.0)) as http:
        tracemalloc.start()
        started = time.perf_counter()
        await put_file(http, url, headers, path, size, "wav")  # hashes what it sends, as the agent does
        elapsed = time.perf_counter() - started
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return elapsed, peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--minutes", type=float, default=60.0, help="length of the recorded call")
    args = parser.parse_args()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        host = "127.0.0.1"
        for _ in range(100):
            try:
                httpx.get(f"http://{host}:{port}/moto-api/", timeout=1.0)
                break
            except httpx.TransportError:
                time.sleep(0.1)
        s3 = boto3.client(
            "s3",
            region_name="us-east-1",
            endpoint_url=f"http://{host}:{port}",
            aws_access_key_id="bench",
            aws_secret_access_key="bench",
            config=Config(signature_version="s3v4", s3={"addressing_style": "path"}),
        )
        s3.create_bucket(Bucket=BUCKET)
        with tempfile.TemporaryDirectory() as tmp:
            wav = Path(tmp) / "call.wav"
            write_wav(wav, args.minutes)
            rss_before = max_rss_mib()
            started = time.perf_counter()
            size, sha256 = size_and_sha256(wav)
            hashed = time.perf_counter() - started
            checksum = base64.b64encode(bytes.fromhex(sha256)).decode()  # signed into the URL, as the cloud does
            url = s3.generate_presigned_url(
                "put_object",
                Params={"Bucket": BUCKET, "Key": "t/a/c/recording", "ChecksumSHA256": checksum},
                ExpiresIn=3600,
            )
            elapsed, peak = asyncio.run(upload(url, {"x-amz-checksum-sha256": checksum}, wav, size))
            stored = s3.head_object(Bucket=BUCKET, Key="t/a/c/recording")["ContentLength"]
            started = time.perf_counter()
            digest = hashlib.sha256()
            body = s3.get_object(Bucket=BUCKET, Key="t/a/c/recording")["Body"]
            for chunk in body.iter_chunks(1024 * 1024):
                digest.update(chunk)
            verified = time.perf_counter() - started
            mb = size / 1e6
            print(f"recording: {args.minutes:g} min of 8 kHz mono WAV = {mb:.1f} MB")
            print(f"sha256 + size (the agent, before asking): {hashed:.2f} s ({mb / hashed:.0f} MB/s)")
            print(f"PUT to moto on loopback (x-amz-checksum-sha256 signed, hashed while sent): {elapsed:.2f} s "
                  f"({mb / elapsed:.0f} MB/s), stored {stored == size}")  # fmt: skip
            print(
                f"the cloud hashing the object from moto (its check where S3 kept no checksum): {verified:.2f} s "
                f"({mb / verified:.0f} MB/s), equal {digest.hexdigest() == sha256}"
            )
            print(f"Python heap peak during the upload: {peak / 2**20:.1f} MiB (tracemalloc)")
            print(f"agent process max RSS: {rss_before:.0f} MiB before the upload, {max_rss_mib():.0f} MiB after")
            if shutil.which("lame"):
                settings = RecordingsSettings(converter="lame")
                started = time.perf_counter()
                mp3 = asyncio.run(prepare(wav, "mp3", settings, Path(tmp) / "work", "bench"))
                converted = time.perf_counter() - started
                ratio = mp3.path.stat().st_size / size
                speed = args.minutes * 60 / converted
                print(f"lame to MP3 (32 kbit/s): {converted:.1f} s ({speed:.0f}x real time), {ratio:.0%} of the WAV")
            else:
                print("lame: not installed (apt install lame); conversion not measured")
    finally:
        server.terminate()
        server.wait(10)


if __name__ == "__main__":
    main()
