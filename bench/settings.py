"""The site as the benchmark runs it: chatsite's own settings, plus two things.

* Passwords are hashed with a fast hasher: signing in 800 simulated browsers with
  Django's PBKDF2 would take minutes of CPU, and sign-in is not what is measured.
* The `bench.writes` app counts the database writes the site makes (an execute wrapper on
  every connection), served at /bench/writes/ for the benchmark to read between phases.

Nothing in the answer's path is replaced: upstream, channel layer, rendering, checkpoints
and sockets are the ones `make run` serves.
"""

from chatsite.settings import *  # noqa: F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
INSTALLED_APPS = [*INSTALLED_APPS, "bench.writes.WritesConfig"]  # noqa: F405
ROOT_URLCONF = "bench.urls"
