"""Loaded by the benchmarks only (on PYTHONPATH beside the handlers; not in the deployment zip).

crhelper PUTs its answer with http.client.HTTPSConnection whatever the ResponseURL's scheme; the
bench's ResponseURL receiver is plain HTTP on loopback (ours is sent there over plain HTTP too).
So connections to 127.0.0.1 are made without TLS; any other host is left as it is.
"""

import http.client

_https = http.client.HTTPSConnection


def _connection(host, *args, context=None, **kwargs):
    if host.split(":")[0] == "127.0.0.1":
        return http.client.HTTPConnection(host, *args, **kwargs)
    return _https(host, *args, context=context, **kwargs)


http.client.HTTPSConnection = _connection
