#!/usr/bin/env python3
"""Writes the seed corpus of each fuzz target into fuzz/corpus/TARGET from the repository's own
test manifests (tests/examples) and a few hand-picked inputs. Deterministic: the same files every
run, so a crash found from a seed is found again."""

import json
import pathlib
import sys

import yaml  # PyYAML, from the test environment

ROOT = pathlib.Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "tests" / "examples"
# Index of each resource in everynode_api::registry::RESOURCES is not fixed here: the first byte
# picks a resource modulo their number, so a few values cover several.
SELECTORS = range(0, 24)


def manifests():
    """Each example file's bytes, and each YAML document in it that parses, as JSON."""
    for path in sorted(EXAMPLES.glob("*.yaml")):
        raw = path.read_bytes()
        docs = []
        try:
            docs = [d for d in yaml.safe_load_all(raw) if isinstance(d, dict)]
        except yaml.YAMLError:
            pass
        yield path.stem, raw, docs


PATCHES = [
    b'[{"op":"add","path":"/metadata/labels/x","value":"1"},{"op":"copy","from":"/spec","path":"/metadata/annotations"}]',
    b'[{"op":"replace","path":"","value":"x"}]',
    b'{"metadata":{"labels":{"a":null}},"spec":{"template":{"spec":{"containers":[{"name":"x","image":"y"}]}}}}',
    b'{"spec":{"template":{"spec":{"$setElementOrder/containers":[{"name":"b"},{"name":"a"}],"containers":[{"name":"a","$patch":"delete"}]}}}}',
    b'{"metadata":{"finalizers":["a"],"$deleteFromPrimitiveList/finalizers":["b"]},"$retainKeys":["metadata"]}',
]
QUERIES = [
    "labelSelector=app%3Da,tier+notin+(x,y)&fieldSelector=spec.nodeName%3Dn1&limit=5&continue=eyJzdGFydCI6ImEifQ",
    "watch=1&timeoutSeconds=9223372036854775807&resourceVersion=0&resourceVersionMatch=NotOlderThan",
    "dryRun=All&fieldManager=kubectl&fieldValidation=Strict&force=true",
    "container=c&follow=true&tailLines=10&sinceSeconds=5&limitBytes=100&previous=false&timestamps=1",
    "gracePeriodSeconds=0&propagationPolicy=Foreground&orphanDependents=false",
]


def write(target, name, data):
    d = ROOT / "fuzz" / "corpus" / target
    d.mkdir(parents=True, exist_ok=True)
    (d / f"seed-{name}").write_bytes(data)


def main():
    for stem, raw, docs in manifests():
        for sel in SELECTORS:
            for ct in range(3):
                body = raw if ct == 1 else json.dumps(docs[0] if docs else {}).encode()
                write("decode_object", f"{stem}-{sel}-{ct}", bytes([sel, ct]) + body)
        for i, doc in enumerate(docs):
            original = json.dumps(doc).encode()
            for j, patch in enumerate(PATCHES):
                write("patch", f"{stem}-{i}-{j}", bytes([j, j % 3]) + original + b"\0" + patch)
            write("apply", f"{stem}-{i}", bytes([i, 0]) + original + b"\0" + raw)
    for i, q in enumerate(QUERIES):
        write("query_options", str(i), q.encode())
    for i, s in enumerate(["app=a,tier!=b", "x in (a, b),!y", "a.b/c notin ()", "spec.nodeName=n,status.phase!=Running", ""]):
        write("selectors", str(i), s.encode())
    for i, s in enumerate(["100m", "1.5Gi", "1e3", "-0.000000001", "9223372036854775807Ei", "0x1"]):
        write("quantity", str(i), s.encode())
    # The pass's input is structured (arbitrary's encoding); random bytes are a fine start.
    for i in range(8):
        write("daemonset_pass", str(i), bytes(range(i * 16, i * 16 + 64 if i * 16 + 64 < 256 else 255)))


if __name__ == "__main__":
    sys.exit(main())
