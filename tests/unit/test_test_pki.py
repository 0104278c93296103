"""The secured cluster tests' throwaway PKI passes strict certificate verification (no broker)."""

from __future__ import annotations

import ssl

from tests.cluster.certs import ADMIN_CN, NODE_CN, make_test_pki


def _handshake(client: ssl.SSLContext, server: ssl.SSLContext) -> tuple[ssl.SSLObject, ssl.SSLObject]:
    """A TLS handshake between two contexts through memory buffers; raises what either side refuses."""
    c_in, c_out, s_in, s_out = ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO()
    client_side = client.wrap_bio(c_in, c_out, server_hostname="127.0.0.1")
    server_side = server.wrap_bio(s_in, s_out, server_side=True)
    done = {"client": False, "server": False}
    for _ in range(20):
        for name, side, out, peer_in in (("client", client_side, c_out, s_in), ("server", server_side, s_out, c_in)):
            if not done[name]:
                try:
                    side.do_handshake()
                    done[name] = True
                except ssl.SSLWantReadError:
                    pass
            peer_in.write(out.read())
        if all(done.values()):
            return client_side, server_side
    raise AssertionError(f"handshake did not finish: {done}")


def test_node_and_admin_certificates_verify_strictly_both_ways(tmp_path):
    pki = make_test_pki(tmp_path)
    # What Python 3.13's default context does on every version: VERIFY_X509_STRICT
    client = ssl.create_default_context(cafile=str(pki.ca_pem))
    client.verify_flags |= ssl.VERIFY_X509_STRICT
    client.load_cert_chain(str(pki.admin_pem))
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(str(pki.node_pem))
    server.load_verify_locations(cafile=str(pki.ca_pem))
    server.verify_mode = ssl.CERT_REQUIRED
    server.verify_flags |= ssl.VERIFY_X509_STRICT
    client_side, server_side = _handshake(client, server)
    assert dict(x[0] for x in client_side.getpeercert()["subject"])["commonName"] == NODE_CN
    assert dict(x[0] for x in server_side.getpeercert()["subject"])["commonName"] == ADMIN_CN
