#!/usr/bin/env python3
"""Writes the synthetic hwloc XML topologies used by sepia-tuning's tests.

The machines are described by hand (not by `lstopo --input "pack:2 ..."`)
so that they look like real Linux servers where synthetic topologies do not:
hyperthread siblings are numbered N and N + cores (as Linux numbers them,
not adjacent), core os indexes restart in every package, and the PCI tree
(host bridges, root ports, NVMe drives, a NIC, a SATA boot disk attached to
no NUMA node) hangs under the package it is local to.

Run from this directory: `python3 gen.py`; check with
`lstopo-no-graphics --input FILE.xml --whole-io`.
"""

GIB = 1 << 30


def bitmap(bits):
    """hwloc's bitmap text: 32-bit words, most significant first."""
    if not bits:
        return "0x0"
    words = [0] * (max(bits) // 32 + 1)
    for b in bits:
        words[b // 32] |= 1 << (b % 32)
    return ",".join("0x%08x" % w for w in reversed(words))


class Gen:
    def __init__(self):
        self.gp = 0
        self.lines = []

    def gpi(self):
        self.gp += 1
        return self.gp

    def emit(self, depth, text):
        self.lines.append("  " * depth + text)

    def sets(self, cpus, nodes):
        c, n = bitmap(cpus), bitmap(nodes)
        return (f'cpuset="{c}" complete_cpuset="{c}" '
                f'nodeset="{n}" complete_nodeset="{n}"')


def machine(name, packages, cores_per_package, threads, io, loose_io,
            mem_per_node=64 * GIB):
    """packages: count; io: {package: [pci root port specs]}.

    A root-port spec is (bus, class, vendor:device, [(osdev name, type)]).
    """
    g = Gen()
    total_cores = packages * cores_per_package
    all_cpus = list(range(total_cores * threads))
    all_nodes = list(range(packages))

    def pus_of(p, c):
        first = p * cores_per_package + c
        return [first + t * total_cores for t in range(threads)]

    g.lines.append('<?xml version="1.0" encoding="UTF-8"?>')
    g.lines.append('<!DOCTYPE topology SYSTEM "hwloc2.dtd">')
    g.lines.append('<topology version="2.0">')
    c, n = bitmap(all_cpus), bitmap(all_nodes)
    g.emit(1, f'<object type="Machine" os_index="0" {g.sets(all_cpus, all_nodes)} '
              f'allowed_cpuset="{c}" allowed_nodeset="{n}" gp_index="{g.gpi()}">')
    g.emit(2, '<info name="Backend" value="Linux"/>')
    g.emit(2, f'<info name="HostName" value="{name}"/>')
    g.emit(2, '<info name="Architecture" value="x86_64"/>')
    for p in range(packages):
        pcpus = sorted(x for cc in range(cores_per_package) for x in pus_of(p, cc))
        g.emit(2, f'<object type="Package" os_index="{p}" {g.sets(pcpus, [p])} gp_index="{g.gpi()}">')
        g.emit(3, '<info name="CPUModel" value="Synthetic Xeon"/>')
        g.emit(3, f'<object type="NUMANode" os_index="{p}" {g.sets(pcpus, [p])} '
                  f'gp_index="{g.gpi()}" local_memory="{mem_per_node}">')
        g.emit(4, f'<page_type size="4096" count="{mem_per_node // 4096}"/>')
        g.emit(3, '</object>')
        g.emit(3, f'<object type="L3Cache" os_index="{p}" {g.sets(pcpus, [p])} gp_index="{g.gpi()}" '
                  'cache_size="50331648" depth="3" cache_linesize="64" cache_associativity="12" cache_type="0">')
        for cc in range(cores_per_package):
            cpus = pus_of(p, cc)
            s = g.sets(cpus, [p])
            lin = p * cores_per_package + cc
            g.emit(4, f'<object type="L2Cache" os_index="{lin}" {s} gp_index="{g.gpi()}" '
                      'cache_size="2097152" depth="2" cache_linesize="64" cache_associativity="16" cache_type="0">')
            g.emit(5, f'<object type="L1Cache" os_index="{lin}" {s} gp_index="{g.gpi()}" '
                      'cache_size="49152" depth="1" cache_linesize="64" cache_associativity="12" cache_type="1">')
            g.emit(6, f'<object type="L1iCache" os_index="{lin}" {s} gp_index="{g.gpi()}" '
                      'cache_size="32768" depth="1" cache_linesize="64" cache_associativity="8" cache_type="2">')
            g.emit(7, f'<object type="Core" os_index="{cc}" {s} gp_index="{g.gpi()}">')
            for pu in cpus:
                g.emit(8, f'<object type="PU" os_index="{pu}" {g.sets([pu], [p])} gp_index="{g.gpi()}"/>')
            g.emit(7, '</object>')
            g.emit(6, '</object>')
            g.emit(5, '</object>')
            g.emit(4, '</object>')
        g.emit(3, '</object>')
        host_bridge(g, 3, io.get(p, []))
        g.emit(2, '</object>')
    host_bridge(g, 2, loose_io)
    g.emit(1, '</object>')
    g.lines.append('</topology>')
    return "\n".join(g.lines) + "\n"


def host_bridge(g, depth, ports):
    """One host bridge with one root port (PCI bridge) per device."""
    if not ports:
        return
    dom = ports[0][0] >> 8
    lo = min(bus & 0xff for bus, *_ in ports) - 1
    hi = max(bus & 0xff for bus, *_ in ports)
    g.emit(depth, f'<object type="Bridge" gp_index="{g.gpi()}" bridge_type="0-1" depth="0" '
                  f'bridge_pci="{dom:04x}:[{lo:02x}-{hi:02x}]">')
    for slot, (bus, cls, ids, osdevs) in enumerate(ports, start=1):
        b = bus & 0xff
        g.emit(depth + 1, f'<object type="Bridge" gp_index="{g.gpi()}" bridge_type="1-1" depth="1" '
                          f'bridge_pci="{dom:04x}:[{b:02x}-{b:02x}]" pci_busid="{dom:04x}:{lo:02x}:{slot:02x}.0" '
                          'pci_type="0604 [8086:347a] [0000:0000] 04" pci_link_speed="7.876923">')
        g.emit(depth + 2, f'<object type="PCIDev" gp_index="{g.gpi()}" pci_busid="{dom:04x}:{b:02x}:00.0" '
                          f'pci_type="{cls} [{ids}] [{ids}] 00" pci_link_speed="7.876923">')
        for name, ty in osdevs:
            if ty == 0:
                g.emit(depth + 3, f'<object type="OSDev" gp_index="{g.gpi()}" name="{name}" osdev_type="0">')
                g.emit(depth + 4, '<info name="Size" value="3750738264"/>')
                g.emit(depth + 4, '<info name="SectorSize" value="4096"/>')
            else:
                g.emit(depth + 3, f'<object type="OSDev" gp_index="{g.gpi()}" name="{name}" osdev_type="{ty}">')
                g.emit(depth + 4, '<info name="Address" value="0c:42:a1:00:00:01"/>')
            g.emit(depth + 3, '</object>')
        g.emit(depth + 2, '</object>')
        g.emit(depth + 1, '</object>')
    g.emit(depth, '</object>')


NVME = ("0108", "144d:a80a")
NIC = ("0200", "15b3:1017")
SATA = ("0106", "8086:a182")


def nvme(bus, name):
    return (bus, NVME[0], NVME[1], [(name, 0)])


def main():
    # 2 sockets x 32 cores x 2 threads, one NUMA node per socket. nvme0-3 on
    # socket 0, nvme4-7 and the NIC on socket 1 (so "reserve near the NIC"
    # is distinguishable from "reserve core 0"), sda on no node.
    dense = machine(
        "dense-2s64c",
        packages=2, cores_per_package=32, threads=2,
        io={
            0: [nvme(0x01 + i, f"nvme{i}n1") for i in range(4)],
            1: [nvme(0x81 + i, f"nvme{4 + i}n1") for i in range(4)]
               + [(0x85, NIC[0], NIC[1], [("eth0", 2)])],
        },
        loose_io=[(0x1_01, SATA[0], SATA[1], [("sda", 0)])],
    )
    with open("dense-2s64c-8nvme.xml", "w") as f:
        f.write(dense)

    single = machine(
        "single-1s16c",
        packages=1, cores_per_package=16, threads=2,
        io={0: [nvme(0x01, "nvme0n1"), nvme(0x02, "nvme1n1"),
                (0x03, NIC[0], NIC[1], [("eth0", 2)])]},
        loose_io=[],
    )
    with open("single-1s16c-2nvme.xml", "w") as f:
        f.write(single)


if __name__ == "__main__":
    main()
