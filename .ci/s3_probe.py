"""Prove an S3 server is ready: a signed PUT, then DELETE, of a small object (stdlib only).

Usage: s3_probe.py ENDPOINT BUCKET REGION ACCESS_KEY SECRET_KEY
Exits 0 when both requests succeed, 1 otherwise (with the reason on stderr).

Signs with AWS Signature Version 4 itself rather than relying on curl's --aws-sigv4, whose
older releases do not send the x-amz-content-sha256 header that S3 servers require.
"""

import datetime
import hashlib
import hmac
import sys
import urllib.error
import urllib.parse
import urllib.request


def _hmac(key: bytes, text: str) -> bytes:
    return hmac.new(key, text.encode(), hashlib.sha256).digest()


def signed_request(method, endpoint, path, region, access_key, secret_key, body=b""):
    """Send one path-style S3 request signed with SigV4; return the HTTP status."""
    now = datetime.datetime.now(datetime.timezone.utc)
    amz_date, day = now.strftime("%Y%m%dT%H%M%SZ"), now.strftime("%Y%m%d")
    host = urllib.parse.urlsplit(endpoint).netloc
    payload_hash = hashlib.sha256(body).hexdigest()
    headers = {"host": host, "x-amz-content-sha256": payload_hash, "x-amz-date": amz_date}
    signed = ";".join(sorted(headers))
    canonical = "\n".join(
        [method, urllib.parse.quote(path), "", *(f"{k}:{headers[k]}" for k in sorted(headers)), "", signed, payload_hash]
    )
    scope = f"{day}/{region}/s3/aws4_request"
    to_sign = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()])
    key = b"AWS4" + secret_key.encode()
    for part in (day, region, "s3", "aws4_request"):
        key = _hmac(key, part)
    signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    headers["authorization"] = (
        f"AWS4-HMAC-SHA256 Credential={access_key}/{scope}, SignedHeaders={signed}, Signature={signature}"
    )
    request = urllib.request.Request(endpoint + path, data=body or None, method=method, headers=headers)
    with urllib.request.urlopen(request, timeout=5) as response:
        return response.status


def main() -> int:
    endpoint, bucket, region, access_key, secret_key = sys.argv[1:6]
    path = f"/{bucket}/.ci-probe"
    try:
        signed_request("PUT", endpoint, path, region, access_key, secret_key, body=b"probe")
        signed_request("DELETE", endpoint, path, region, access_key, secret_key)
    except (urllib.error.URLError, OSError) as e:
        detail = e.read().decode(errors="replace") if isinstance(e, urllib.error.HTTPError) else ""
        print(f"s3 probe: {e} {detail}".strip(), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
