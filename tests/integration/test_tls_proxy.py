"""HOPE behind nginx with TLS, as deployed (configs/nginx): a real Orthanc, a real HOPE server and Debian's nginx on
loopback, with a self-signed certificate the client trusts explicitly.

The proxy runs ``configs/nginx/hope-proxy.conf`` as shipped (TLS settings, HSTS, the proxy location), inside the
production site's shape (:mod:`hope.processes.nginx`); the production site ``configs/nginx/hope.conf`` itself is
checked by ``nginx -t``. Only nginx's upload limit is lowered (1 MB), so that a 2 MB body tests it.
"""

from __future__ import annotations

import io
import re
import socket
import ssl
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import requests

from hope.demo import store_volume
from hope.dicom.series_writer import SeriesIdentity, new_identity
from hope.processes.nginx import (
    PROXY_SNIPPET,
    SITE_EXAMPLE,
    SITE_EXAMPLE_INCLUDE,
    NginxSettings,
    check_config,
    main_config,
    nginx_binary,
    nginx_process,
    self_signed_certificate,
)
from hope.processes.orthanc import OrthancSettings
from hope.processes.process import free_port

from ..conftest import running_hope
from .helpers import poll

pytestmark = pytest.mark.slow

HSTS = "max-age=63072000"
PATIENT_ID = "TLS-PROXY-1"


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate and key for 127.0.0.1 and localhost."""
    try:
        nginx_binary()
    except FileNotFoundError as exc:
        pytest.fail(str(exc))  # setup.sh installs nginx: its absence is a broken environment, not a skip
    return self_signed_certificate(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="module")
def stored_series(orthanc: OrthancSettings) -> SeriesIdentity:
    """A tiny CT series in Orthanc, for the DICOMweb proxy to find."""
    identity = new_identity(PATIENT_ID, series_description="TLS proxy")
    store_volume(orthanc.url, np.zeros((2, 8, 8), dtype=np.int16), (1.0, 1.0, 1.0), identity, auth=orthanc.auth)
    return identity


@pytest.fixture(scope="module")
def proxy(
    orthanc: OrthancSettings, certificate: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[NginxSettings]:
    """HOPE on a free loopback port and nginx in front of it: https on a free port, plain http redirected."""
    allowed = {"allowed_hosts": ["127.0.0.1", "localhost"]}
    with running_hope(orthanc, tmp_path_factory.mktemp("hope-tls"), http=allowed) as (hope_url, _):
        cert, key = certificate
        settings = NginxSettings(
            https_port=free_port(),
            upstream_port=int(hope_url.rsplit(":", 1)[1]),
            server_name="127.0.0.1",
            cert_file=cert,
            key_file=key,
            work_dir=tmp_path_factory.mktemp("nginx"),
            http_port=free_port(),
            client_max_body_size="1m",
        )
        process = nginx_process(settings)
        process.start(timeout=30)
        try:
            yield settings
        finally:
            process.stop()


def test_production_site_example_is_valid(certificate: tuple[Path, Path], tmp_path: Path) -> None:
    """``configs/nginx/hope.conf`` with its snippet passes ``nginx -t`` (only its certificate paths and the
    snippet's installed location are swapped for this machine's)."""
    cert, key = certificate
    site = SITE_EXAMPLE.read_text()
    assert site.count(SITE_EXAMPLE_INCLUDE) == 1, "hope.conf must include the shared snippet once"
    site = site.replace(SITE_EXAMPLE_INCLUDE, f"include {PROXY_SNIPPET};")
    site, certs = re.subn(r"(?m)^(\s*ssl_certificate\s+)\S+;", rf"\g<1>{cert};", site)
    site, keys = re.subn(r"(?m)^(\s*ssl_certificate_key\s+)\S+;", rf"\g<1>{key};", site)
    assert (certs, keys) == (1, 1)
    config = tmp_path / "nginx.conf"
    config.write_text(main_config(tmp_path, site))
    check_config(config, tmp_path)


def test_info_over_tls_with_hsts(proxy: NginxSettings) -> None:
    """HOPE answers through the proxy, over verified TLS, and browsers are told to keep to https."""
    response = requests.get(f"{proxy.url}/info/", verify=str(proxy.cert_file), timeout=30)
    assert response.status_code == 200, response.text
    assert "models" in response.json()
    assert response.headers["Strict-Transport-Security"] == HSTS
    assert response.headers["Server"] == "nginx"  # server_tokens off: no version


def _handshake(proxy: NginxSettings, version: ssl.TLSVersion) -> str:
    """The protocol a verified TLS handshake of exactly ``version`` agrees on (an ``SSLError`` if refused)."""
    context = ssl.create_default_context(cafile=str(proxy.cert_file))
    context.minimum_version = context.maximum_version = version
    if version < ssl.TLSVersion.TLSv1_2:
        context.set_ciphers("ALL:@SECLEVEL=0")  # let this client offer the old protocol at all
    with socket.create_connection(("127.0.0.1", proxy.https_port), timeout=10) as raw, \
            context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
        return str(tls.version())


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1:DeprecationWarning")  # offering them is the point
def test_only_tls_1_2_and_1_3_are_offered(proxy: NginxSettings) -> None:
    """TLS 1.2 and 1.3 handshakes succeed with the certificate as trust anchor; TLS 1.0 and 1.1 are refused."""
    assert _handshake(proxy, ssl.TLSVersion.TLSv1_3) == "TLSv1.3"
    assert _handshake(proxy, ssl.TLSVersion.TLSv1_2) == "TLSv1.2"
    for old in (ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1_1):
        with pytest.raises(ssl.SSLError):
            _handshake(proxy, old)


def test_plain_http_on_the_tls_port_is_refused(proxy: NginxSettings) -> None:
    """Plain http sent to the https port gets nginx's 400, never HOPE."""
    response = requests.get(f"http://127.0.0.1:{proxy.https_port}/info/", timeout=30)
    assert response.status_code == 400
    assert "plain HTTP request was sent to HTTPS port" in response.text


def test_plain_http_port_redirects_to_https(proxy: NginxSettings) -> None:
    """The plain-http server only redirects, to the configured name, keeping the path and query."""
    response = requests.get(f"http://127.0.0.1:{proxy.http_port}/info/?x=1", allow_redirects=False, timeout=30)
    assert response.status_code == 301
    assert response.headers["Location"] == "https://127.0.0.1/info/?x=1"


def test_dicomweb_proxy_answers_through_tls(proxy: NginxSettings, stored_series: SeriesIdentity) -> None:
    """OHIF's path to Orthanc: HOPE's DICOMweb proxy, streamed through nginx (QIDO-RS, then WADO-RS metadata)."""
    verify = str(proxy.cert_file)

    def studies() -> list[dict]:
        response = requests.get(f"{proxy.url}/proxy/dicom/qido/studies", params={"PatientID": PATIENT_ID},
                                headers={"Accept": "application/dicom+json"}, verify=verify, timeout=30)
        assert response.status_code == 200, response.text
        return response.json()

    found = poll(studies, 30, "the stored study to be listed through the proxy")
    assert [s["0020000D"]["Value"][0] for s in found] == [stored_series.study_instance_uid]

    metadata = requests.get(
        f"{proxy.url}/proxy/dicom/wado/studies/{stored_series.study_instance_uid}/series/"
        f"{stored_series.series_instance_uid}/metadata",
        headers={"Accept": "application/dicom+json"}, verify=verify, timeout=30,
    )
    assert metadata.status_code == 200, metadata.text
    assert len(metadata.json()) == 2


def test_upload_over_the_proxy_limit_is_refused_by_nginx(proxy: NginxSettings) -> None:
    """A body over client_max_body_size is a 413 from nginx; one under it reaches HOPE (which answers itself)."""
    def put(size: int) -> requests.Response:
        return requests.put(
            f"{proxy.url}/datastore/label", params={"image": "1.2.3.4", "tag": "final"},
            files={"label": ("label.nii.gz", io.BytesIO(b"\0" * size), "application/octet-stream")},
            data={"params": "{}"}, verify=str(proxy.cert_file), timeout=60,
        )

    refused = put(2 << 20)
    assert refused.status_code == 413
    assert "nginx" in refused.text  # nginx's own page: HOPE never saw it

    reached = put(64 << 10)
    assert 400 <= reached.status_code < 500 and reached.status_code != 413, reached.text
    assert "detail" in reached.json()  # HOPE's error body: the upload went through


def test_host_not_allowed_by_hope_is_refused_through_the_proxy(proxy: NginxSettings) -> None:
    """nginx forwards the client's Host; HOPE checks it against http.allowed_hosts (DNS rebinding stays closed)."""
    response = requests.get(f"{proxy.url}/info/", headers={"Host": "evil.example.org"},
                            verify=str(proxy.cert_file), timeout=30)
    assert response.status_code == 400
    assert response.text == "Invalid host header"  # Starlette's TrustedHostMiddleware, in HOPE
