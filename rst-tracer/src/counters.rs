//! Reading the kernel's counters and its flow table.

use anyhow::{anyhow, Context, Result};
use aya::{
    maps::{HashMap, MapData, PerCpuArray, PerCpuHashMap},
    Ebpf,
};
use rst_tracer_common::{
    counter::Counter,
    flow::{DroppedReset, FlowKey, FlowState},
    names::{MAP_COUNTERS, MAP_DROPPED_RESETS, MAP_FLOWS},
};

/// A snapshot of the kernel counters (summed over CPUs) and the flow table.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CounterSnapshot {
    /// One value per `Counter`, in index order.
    pub values: Vec<u64>,
    /// Entries in the kernel flow table, when they were counted.
    pub flow_entries: Option<u64>,
    /// Resets the kernel dropped on a full ring, per flow, sender and hook (cumulative).
    pub dropped_resets: Vec<(DroppedReset, u64)>,
}

impl CounterSnapshot {
    /// Value of one counter.
    pub fn get(&self, c: Counter) -> u64 {
        self.values.get(c as usize).copied().unwrap_or(0)
    }
}

/// The kernel's entry for one flow, if the table still holds it.
pub fn flow_state(ebpf: &Ebpf, key: &FlowKey) -> Option<FlowState> {
    let flows: HashMap<&MapData, FlowKey, FlowState> =
        HashMap::try_from(ebpf.map(MAP_FLOWS)?).ok()?;
    flows.get(key, 0).ok()
}

/// Sums every counter over the CPUs; with `count_flows`, also counts the flow-table entries
/// (one syscall per entry: done once per summary, not per event).
///
/// # Errors
/// When a map is missing or a look-up fails.
pub fn snapshot(ebpf: &Ebpf, count_flows: bool) -> Result<CounterSnapshot> {
    let map = ebpf
        .map(MAP_COUNTERS)
        .ok_or_else(|| anyhow!("map {MAP_COUNTERS} missing"))?;
    let array: PerCpuArray<&MapData, u64> = PerCpuArray::try_from(map)?;
    let mut values = Vec::with_capacity(Counter::COUNT as usize);
    for c in Counter::ALL {
        let per_cpu = array
            .get(&(c as u32), 0)
            .with_context(|| format!("reading counter {}", c.name()))?;
        values.push(per_cpu.iter().sum());
    }
    let flow_entries = if count_flows {
        let map = ebpf
            .map(MAP_FLOWS)
            .ok_or_else(|| anyhow!("map {MAP_FLOWS} missing"))?;
        let flows: HashMap<&MapData, FlowKey, FlowState> = HashMap::try_from(map)?;
        Some(flows.keys().filter(|k| k.is_ok()).count() as u64)
    } else {
        None
    };
    Ok(CounterSnapshot {
        values,
        flow_entries,
        dropped_resets: dropped_resets(ebpf)?,
    })
}

/// The kernel's count of resets dropped on a full ring, per flow, sender and hook, summed over
/// the CPUs (cumulative since load). Empty unless the reset ring ever filled.
fn dropped_resets(ebpf: &Ebpf) -> Result<Vec<(DroppedReset, u64)>> {
    let map = ebpf
        .map(MAP_DROPPED_RESETS)
        .ok_or_else(|| anyhow!("map {MAP_DROPPED_RESETS} missing"))?;
    let tally: PerCpuHashMap<&MapData, DroppedReset, u64> = PerCpuHashMap::try_from(map)?;
    let mut out = Vec::new();
    for key in tally.keys() {
        // An entry the kernel evicted between the key walk and the look-up is simply gone.
        let Ok(key) = key else { continue };
        if let Ok(per_cpu) = tally.get(&key, 0) {
            out.push((key, per_cpu.iter().sum()));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_readme_lists_every_kernel_counter_in_slot_order() {
        let readme = crate::readme::first_column("| counter | counts |");
        let names: Vec<&str> = Counter::ALL.iter().map(|c| c.name()).collect();
        assert_eq!(readme, names, "README table vs Counter::ALL");
    }
}
