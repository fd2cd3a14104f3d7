"""Container health checks, without curl in the image.

  healthcheck.py URL              GET URL; healthy on 200. The Host header is the first of ALLOWED_HOSTS,
                                  since Django refuses hosts it does not serve (health is exempt from
                                  the HTTPS redirect, so plain HTTP to the container is fine).
  healthcheck.py --file PATH AGE  healthy when PATH was touched less than AGE seconds ago
                                  (`manage.py sweep --heartbeat PATH` touches it after every round).
"""
import os
import sys
import time
import urllib.request


def check_url(url: str) -> int:
    hosts = [h.strip().lstrip(".") for h in os.environ.get("ALLOWED_HOSTS", "").split(",") if h.strip()]
    host = next((h for h in hosts if h != "*"), "localhost")
    request = urllib.request.Request(url, headers={"Host": host})
    try:
        with urllib.request.urlopen(request, timeout=4) as response:
            return 0 if response.status == 200 else 1
    except Exception as exc:  # any failure is "unhealthy"; the reason goes to `docker inspect`
        print(f"unhealthy: {exc}", file=sys.stderr)
        return 1


def check_file(path: str, max_age: float) -> int:
    try:
        age = time.time() - os.stat(path).st_mtime
    except FileNotFoundError:
        print(f"unhealthy: {path} does not exist yet", file=sys.stderr)
        return 1
    if age > max_age:
        print(f"unhealthy: {path} last touched {age:.0f}s ago", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--file":
        sys.exit(check_file(sys.argv[2], float(sys.argv[3])))
    if len(sys.argv) == 2:
        sys.exit(check_url(sys.argv[1]))
    sys.exit(__doc__)
