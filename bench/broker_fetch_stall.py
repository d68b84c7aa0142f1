"""Repro: steady 10k/s producer into Tansu; 8 per-partition consumers read slowly (~4k/s total)."""
import threading, time, sys
from confluent_kafka import Consumer, Producer, TopicPartition
from orderhealth.broker import EmbeddedBroker
from orderhealth.kafka import client_config, ensure_topic
from orderhealth.generator import GeneratorConfig, generate_messages
RATE, SECS, P = 10000, 60, 8
with EmbeddedBroker() as b:
    ensure_topic(b.bootstrap_servers, "s", P)
    cons = []
    for p in range(P):
        c = Consumer({**client_config(b.bootstrap_servers), "group.id": "g", "enable.auto.commit": False, "enable.partition.eof": False})
        c.assign([TopicPartition("s", p, 0)]); cons.append(c)
    pos = [0]*P; stop = threading.Event()
    def reader():
        while not stop.is_set():
            for p, c in enumerate(cons):
                for m in c.consume(500, 0.001):
                    if m.error() is None: pos[p] = m.offset()
            time.sleep(0.1)  # ~ 8*500/0.1 = 40k/s max, but sleeps model a busy flow
    t = threading.Thread(target=reader, daemon=True); t.start()
    prod = Producer({**client_config(b.bootstrap_servers), "linger.ms": "5", "queue.buffering.max.messages": "1000000"})
    msgs = generate_messages(GeneratorConfig(events=RATE*SECS+1000, seed=11, scenario="warehouse_outage", bad_fraction=0.002))
    start = time.monotonic(); n = 0
    for k, v in msgs:
        due = start + n / RATE
        if due > start + SECS: break
        while time.monotonic() < due: time.sleep(0.0005)
        prod.produce("s", value=v, key=k); prod.poll(0); n += 1
        if n % 100000 == 0: print("produced", n, "consumed pos", pos, flush=True)
    prod.flush(60)
    print("produced", n, flush=True)
    for i in range(12):
        time.sleep(5); print("pos", pos, "total~", sum(x+1 for x in pos), flush=True)
    stop.set()
