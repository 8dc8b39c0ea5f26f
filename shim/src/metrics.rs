//! libcgroups statistics as containerd's cgroup metrics messages (v1 for legacy and hybrid
//! hosts, v2 for unified ones), which `ctr task metrics` and kubelet decode.

use containerd_shim::protos::cgroups::metrics as v1;
use containerd_shim::protos::cgroups_v2::metrics as v2;
use containerd_shim::protos::protobuf::well_known_types::any::Any;

use libcgroups::common::CgroupSetup;
use libcgroups::stats::Stats;

fn pack(message: &dyn containerd_shim::protos::protobuf::MessageDyn) -> Result<Any, String> {
    let mut any = Any::new();
    any.type_url = message.descriptor_dyn().full_name().to_string();
    any.value = message.write_to_bytes_dyn().map_err(|e| e.to_string())?;
    Ok(any)
}

pub fn to_any(stats: &Stats, setup: CgroupSetup) -> Result<Any, String> {
    match setup {
        CgroupSetup::Unified => pack(&to_v2(stats)),
        CgroupSetup::Legacy | CgroupSetup::Hybrid => pack(&to_v1(stats)),
    }
}

fn entry(data: &libcgroups::stats::MemoryData) -> v1::MemoryEntry {
    let mut e = v1::MemoryEntry::new();
    e.usage = data.usage;
    e.max = data.max_usage;
    e.failcnt = data.fail_count;
    e.limit = data.limit;
    e
}

/// cgroup v1's `cpuacct.stat` counts USER_HZ ticks (libcgroups passes them through); containerd's
/// v1 metrics carry nanoseconds, like `cpuacct.usage`.
fn ticks_to_ns(ticks: u64) -> u64 {
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if hz <= 0 {
        return ticks;
    }
    ticks.saturating_mul(1_000_000_000 / hz as u64)
}

pub fn to_v1(stats: &Stats) -> v1::Metrics {
    let mut m = v1::Metrics::new();

    let mut usage = v1::CPUUsage::new();
    usage.total = stats.cpu.usage.usage_total;
    usage.user = ticks_to_ns(stats.cpu.usage.usage_user);
    usage.kernel = ticks_to_ns(stats.cpu.usage.usage_kernel);
    usage.per_cpu = stats.cpu.usage.per_core_usage_total.clone();
    let mut throttle = v1::Throttle::new();
    throttle.periods = stats.cpu.throttling.periods;
    throttle.throttled_periods = stats.cpu.throttling.throttled_periods;
    throttle.throttled_time = stats.cpu.throttling.throttled_time;
    let mut cpu = v1::CPUStat::new();
    cpu.usage = Some(usage).into();
    cpu.throttling = Some(throttle).into();
    m.cpu = Some(cpu).into();

    let mem = &stats.memory;
    let mut memory = v1::MemoryStat::new();
    memory.usage = Some(entry(&mem.memory)).into();
    memory.swap = Some(entry(&mem.memswap)).into();
    memory.kernel = Some(entry(&mem.kernel)).into();
    memory.kernel_tcp = Some(entry(&mem.kernel_tcp)).into();
    memory.cache = mem.cache;
    let stat = |k: &str| mem.stats.get(k).copied().unwrap_or_default();
    memory.rss = stat("rss");
    memory.mapped_file = stat("mapped_file");
    memory.pg_fault = stat("pgfault");
    memory.pg_maj_fault = stat("pgmajfault");
    memory.inactive_anon = stat("inactive_anon");
    memory.active_anon = stat("active_anon");
    memory.inactive_file = stat("inactive_file");
    memory.active_file = stat("active_file");
    memory.hierarchical_memory_limit = stat("hierarchical_memory_limit");
    memory.total_rss = stat("total_rss");
    memory.total_cache = stat("total_cache");
    m.memory = Some(memory).into();

    let mut pids = v1::PidsStat::new();
    pids.current = stats.pids.current;
    pids.limit = stats.pids.limit;
    m.pids = Some(pids).into();
    m
}

pub fn to_v2(stats: &Stats) -> v2::Metrics {
    let mut m = v2::Metrics::new();

    let mut cpu = v2::CPUStat::new();
    cpu.usage_usec = stats.cpu.usage.usage_total;
    cpu.user_usec = stats.cpu.usage.usage_user;
    cpu.system_usec = stats.cpu.usage.usage_kernel;
    cpu.nr_periods = stats.cpu.throttling.periods;
    cpu.nr_throttled = stats.cpu.throttling.throttled_periods;
    cpu.throttled_usec = stats.cpu.throttling.throttled_time;
    m.cpu = Some(cpu).into();

    let mem = &stats.memory;
    let stat = |k: &str| mem.stats.get(k).copied().unwrap_or_default();
    let mut memory = v2::MemoryStat::new();
    memory.usage = mem.memory.usage;
    memory.usage_limit = mem.memory.limit;
    memory.max_usage = mem.memory.max_usage;
    memory.swap_usage = mem.memswap.usage;
    memory.swap_limit = mem.memswap.limit;
    memory.anon = stat("anon");
    memory.file = stat("file");
    memory.pgfault = stat("pgfault");
    memory.pgmajfault = stat("pgmajfault");
    m.memory = Some(memory).into();

    let mut pids = v2::PidsStat::new();
    pids.current = stats.pids.current;
    pids.limit = stats.pids.limit;
    m.pids = Some(pids).into();
    m
}

#[cfg(test)]
mod tests {
    use super::*;
    use containerd_shim::protos::protobuf::Message;

    fn sample() -> Stats {
        let mut s = Stats::default();
        s.memory.memory.usage = 4096;
        s.memory.memory.limit = 16 << 20;
        s.cpu.usage.usage_total = 1234;
        s.cpu.usage.usage_user = 3;
        s.pids.current = 3;
        s
    }

    #[test]
    fn v1_message_round_trips_with_type_url() {
        let any = to_any(&sample(), CgroupSetup::Hybrid).unwrap();
        assert_eq!(any.type_url, "io.containerd.cgroups.v1.Metrics");
        let m = v1::Metrics::parse_from_bytes(&any.value).unwrap();
        assert_eq!(m.memory.usage.usage, 4096);
        assert_eq!(m.memory.usage.limit, 16 << 20);
        assert_eq!(m.cpu.usage.total, 1234);
        // 3 ticks of user time, in nanoseconds (10 ms per tick at the usual USER_HZ of 100).
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as u64;
        assert_eq!(m.cpu.usage.user, 3 * 1_000_000_000 / hz);
        assert_eq!(m.pids.current, 3);
    }

    #[test]
    fn v2_message_round_trips_with_type_url() {
        let any = to_any(&sample(), CgroupSetup::Unified).unwrap();
        assert_eq!(any.type_url, "io.containerd.cgroups.v2.Metrics");
        let m = v2::Metrics::parse_from_bytes(&any.value).unwrap();
        assert_eq!(m.memory.usage, 4096);
        assert_eq!(m.memory.usage_limit, 16 << 20);
        assert_eq!(m.cpu.usage_usec, 1234);
    }
}
