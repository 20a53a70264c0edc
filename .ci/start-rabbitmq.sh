#!/usr/bin/env bash
# Install and start RabbitMQ from Debian's package, on 127.0.0.1 only (login guest/guest).
#
# No test uses it yet; it is here so the service tests (AMQP jobs in, results out) find a broker.
# Idempotent: an installed package is not reinstalled, and a broker on :5672 is left alone.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

AMQP_PORT=5672

if port_open "$AMQP_PORT"; then
    log "RabbitMQ already listening on 127.0.0.1:$AMQP_PORT"
    exit 0
fi

if ! command -v rabbitmq-server >/dev/null && [ ! -x /usr/sbin/rabbitmq-server ]; then
    log "installing rabbitmq-server with apt-get"
    # Stop the package's own service from starting during install: it would listen on every
    # interface, and we start our own loopback-only broker below. policy-rc.d is Debian's switch
    # for exactly this; add one only if the machine has none, and remove it afterwards.
    added_policy=false
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' | as_root tee /usr/sbin/policy-rc.d >/dev/null
        as_root chmod +x /usr/sbin/policy-rc.d
        added_policy=true
    fi
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq rabbitmq-server >/dev/null
    if $added_policy; then as_root rm -f /usr/sbin/policy-rc.d; fi
fi
export PATH="$PATH:/usr/sbin"

log "starting RabbitMQ on 127.0.0.1:$AMQP_PORT"
# The node, epmd and Erlang distribution all bind to loopback only.
as_root env \
    RABBITMQ_NODE_IP_ADDRESS=127.0.0.1 \
    ERL_EPMD_ADDRESS=127.0.0.1 \
    RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}" \
    rabbitmq-server -detached

# `rabbitmqctl await_startup` fails right after a detached start; the AMQP port opening is the
# signal that matters to clients.
if ! wait_until 60 port_open "$AMQP_PORT"; then
    log "RabbitMQ did not open port $AMQP_PORT within 60 s; see /var/log/rabbitmq/"
    tail -n 40 /var/log/rabbitmq/*.log >&2 2>/dev/null || true
    exit 1
fi
log "RabbitMQ ready on 127.0.0.1:$AMQP_PORT"
