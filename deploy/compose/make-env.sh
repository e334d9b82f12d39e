#!/bin/sh
# Writes a .env for compose.yaml with fresh random secrets to stdout:
#   ./make-env.sh > .env && chmod 600 .env
# PUBLIC_URL (default http://localhost) sets FIELDWATCH_PUBLIC_URL.
set -eu
secret() {  # 32 random bytes, base64url without padding (URL-safe)
    openssl rand -base64 32 | tr '+/' '-_' | tr -d '=\n'
}
cat <<END
POSTGRES_PASSWORD=$(secret)
REDIS_PASSWORD=$(secret)
RABBITMQ_PASSWORD=$(secret)
MOSQUITTO_ADMIN_PASSWORD=$(secret)
FIELDWATCH_JWT_SECRET=$(secret)
FIELDWATCH_ENCRYPTION_KEY=$(secret)
FIELDWATCH_PUBLIC_URL=${PUBLIC_URL:-http://localhost}
FIELDWATCH_SERVER_NAME=_
END
