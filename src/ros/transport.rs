//! Our boundary over ros2-client: a DDS context with `ROS_DOMAIN_ID`, and a node built from
//! `--ros-args` that creates typed publishers and subscriptions with explicit QoS, runs the
//! ros2-client spinner, drains its graph-event channel and keeps `/clock` when `use_sim_time` is set.
//!
//! Background work runs on small named threads, each driving one future with
//! `futures::executor::block_on`, so nodes work with or without a tokio runtime. They all end when
//! the [`RosNode`] is dropped.
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use futures::channel::mpsc;
use futures::{FutureExt, StreamExt};
use ros2_client::{Context, ContextOptions, MessageTypeName, Name, Node, NodeName, NodeOptions};

use super::args::{NodeIdentity, RosArgs};
use super::clock::RosClock;
use super::error::RosError;
use super::msgs::rosgraph_msgs::Clock;
use super::msgs::RosMessage;
use super::params::Params;
use super::qos::Qos;

/// Environment variable that selects the DDS domain (as in every ROS 2 RMW).
pub const DOMAIN_ID_ENV: &str = "ROS_DOMAIN_ID";
/// Largest domain id whose RTPS ports fit below 65535 with the default port mapping.
pub const MAX_DOMAIN_ID: u16 = 232;
/// Topic of the simulated clock.
const CLOCK_TOPIC: &str = "/clock";
/// Parameter that switches a node to `/clock` time.
pub const USE_SIM_TIME: &str = "use_sim_time";

/// Parses a `ROS_DOMAIN_ID` value: unset or empty means 0, like rcl.
pub fn parse_domain_id(value: Option<&str>) -> Result<u16, RosError> {
    let Some(raw) = value.map(str::trim).filter(|v| !v.is_empty()) else {
        return Ok(0);
    };
    let bad = |why: String| RosError::DomainId {
        value: raw.to_string(),
        why,
    };
    let id: u16 = raw
        .parse()
        .map_err(|_| bad(format!("expected an integer 0..={MAX_DOMAIN_ID}")))?;
    if id > MAX_DOMAIN_ID {
        return Err(bad(format!("must be at most {MAX_DOMAIN_ID}")));
    }
    Ok(id)
}

/// Reads and validates `ROS_DOMAIN_ID` from the environment.
pub fn domain_id_from_env() -> Result<u16, RosError> {
    let value = std::env::var(DOMAIN_ID_ENV).ok();
    parse_domain_id(value.as_deref())
}

/// A DDS participant (one per process is usual; tests use several).
#[derive(Clone)]
pub struct RosContext {
    inner: Context,
    domain_id: u16,
}

impl RosContext {
    /// A context on the domain named by `ROS_DOMAIN_ID` (default 0).
    pub fn from_env() -> Result<Self, RosError> {
        Self::with_domain(domain_id_from_env()?)
    }

    /// A context on an explicit domain (the first one in a process also applies `ROS_DISTRO`'s
    /// `ros_discovery_info` layout, see [`super::distro`]).
    pub fn with_domain(domain_id: u16) -> Result<Self, RosError> {
        if domain_id > MAX_DOMAIN_ID {
            return Err(RosError::DomainId {
                value: domain_id.to_string(),
                why: format!("must be at most {MAX_DOMAIN_ID}"),
            });
        }
        super::distro::apply_from_env();
        let inner =
            Context::with_options(ContextOptions::new().domain_id(domain_id)).map_err(|e| RosError::Create {
                what: format!("DDS participant on domain {domain_id}"),
                reason: e.to_string(),
            })?;
        Ok(Self { inner, domain_id })
    }

    /// The DDS domain id.
    pub fn domain_id(&self) -> u16 {
        self.domain_id
    }

    /// The DDS participant (a handle: discovery queries from other threads).
    pub(crate) fn participant(&self) -> ros2_client::dds::rustdds::DomainParticipant {
        self.inner.domain_participant()
    }
}

/// A ROS 2 node: identity from `--ros-args`, endpoints, clock and background tasks.
pub struct RosNode {
    // Field order matters for drop: stop signals first, then the node (which stops the spinner).
    stop: Vec<mpsc::Sender<()>>,
    node: Node,
    identity: NodeIdentity,
    clock: RosClock,
    graph_events: Arc<AtomicU64>,
    _context: RosContext,
}

impl RosNode {
    /// Creates the node `default_ns/default_name` (both subject to `__node:=`/`__ns:=`), declares
    /// its parameters, starts the spinner and the graph-event drain, and follows `/clock` when the
    /// `use_sim_time` parameter is true.
    pub fn new(context: &RosContext, args: &RosArgs, default_name: &str, default_ns: &str) -> Result<Self, RosError> {
        let identity = args.resolve_node(default_name, default_ns)?;
        let use_sim_time = identity.params.bool_or(USE_SIM_TIME, false)?;
        let node_name = NodeName::new(&identity.namespace, &identity.name).map_err(|e| RosError::Create {
            what: format!("node {}", identity.fqn),
            reason: format!("{e:?}"),
        })?;
        // `/rosout` is published by our logging layer (`super::logging::attach_rosout`), one
        // writer per node as rcl has; ros2-client's own would be a second one.
        let mut options = NodeOptions::new()
            .enable_rosout(false)
            .allow_undeclared_parameters(true);
        for (name, value) in identity.params.iter() {
            options = options.declare_parameter(name, value.to_ros2_client());
        }
        let mut node = context
            .inner
            .new_node(node_name, options)
            .map_err(|e| RosError::Create {
                what: format!("node {}", identity.fqn),
                reason: format!("{e:?}"),
            })?;
        let spinner = node.spinner().map_err(|e| RosError::Create {
            what: format!("spinner of {}", identity.fqn),
            reason: e.to_string(),
        })?;
        let mut me = Self {
            stop: Vec::new(),
            node,
            identity,
            clock: if use_sim_time {
                RosClock::simulated()
            } else {
                RosClock::system()
            },
            graph_events: Arc::new(AtomicU64::new(0)),
            _context: context.clone(),
        };
        let fqn = me.identity.fqn.clone();
        spawn_thread("ros-spinner", async move {
            if let Err(e) = spinner.spin().await {
                tracing::error!("spinner of {fqn} stopped: {e}");
            }
        })?;
        me.start_graph_drain()?;
        if use_sim_time {
            me.start_clock()?;
        }
        Ok(me)
    }

    /// Drains the spinner's graph-event channel (it holds 8 events and drops the rest when full).
    fn start_graph_drain(&mut self) -> Result<(), RosError> {
        let Some(events) = self.node.status_receiver() else {
            return Ok(());
        };
        let (tx, mut stop) = mpsc::channel::<()>(1);
        self.stop.push(tx);
        let count = Arc::clone(&self.graph_events);
        spawn_thread("ros-graph", async move {
            loop {
                futures::select! {
                    event = events.recv().fuse() => match event {
                        Ok(event) => {
                            count.fetch_add(1, Ordering::Relaxed);
                            tracing::trace!("graph event: {event:?}");
                        }
                        Err(_) => break,
                    },
                    _ = stop.next() => break,
                }
            }
        })
    }

    /// Subscribes to `/clock` as `rosgraph_msgs/Clock` and feeds the node clock.
    fn start_clock(&mut self) -> Result<(), RosError> {
        let sub: RosSubscription<Clock> = self.create_subscription(CLOCK_TOPIC, Qos::clock())?;
        let clock = self.clock.clone();
        let (tx, mut stop) = mpsc::channel::<()>(1);
        self.stop.push(tx);
        spawn_thread("ros-clock", async move {
            let stream = sub.inner.async_stream();
            futures::pin_mut!(stream);
            loop {
                futures::select! {
                    tick = stream.next() => match tick {
                        Some(Ok((msg, _))) => clock.set_sim_time(msg.clock),
                        Some(Err(e)) => tracing::warn!("bad /clock sample: {e}"),
                        None => break,
                    },
                    _ = stop.next() => break,
                }
            }
        })
    }

    /// Final name, namespace, parameters and remaps.
    pub fn identity(&self) -> &NodeIdentity {
        &self.identity
    }

    /// Node parameters (files, then `-p`).
    pub fn params(&self) -> &Params {
        &self.identity.params
    }

    /// Fully qualified node name.
    pub fn fqn(&self) -> &str {
        &self.identity.fqn
    }

    /// The node clock (system, or `/clock` when `use_sim_time` is true).
    pub fn clock(&self) -> RosClock {
        self.clock.clone()
    }

    /// Graph events seen so far (discovery of other endpoints and nodes).
    pub fn graph_event_count(&self) -> u64 {
        self.graph_events.load(Ordering::Relaxed)
    }

    /// Resolves a topic or service name (expansion against the node, then remaps).
    pub fn resolve(&self, name: &str) -> Result<String, RosError> {
        Ok(self.identity.resolve_topic(name)?)
    }

    fn topic_for<T: RosMessage>(
        &self,
        name: &str,
        qos: Qos,
    ) -> Result<(String, ros2_client::dds::rustdds::Topic), RosError> {
        let resolved = self.resolve(name)?;
        let create = |reason: String| RosError::Create {
            what: format!("topic {resolved} [{}]", T::ros_type()),
            reason,
        };
        let ros_name = Name::parse(&resolved).map_err(|e| create(format!("{e:?}")))?;
        let topic = self
            .node
            .create_topic(&ros_name, MessageTypeName::new(T::PACKAGE, T::NAME), &qos.to_profile())
            .map_err(|e| create(e.to_string()))?;
        Ok((resolved, topic))
    }

    /// A publisher of `T` on `name` (resolved and remapped) with the given QoS.
    pub fn create_publisher<T: RosMessage>(&mut self, name: &str, qos: Qos) -> Result<RosPublisher<T>, RosError> {
        let (topic_name, topic) = self.topic_for::<T>(name, qos)?;
        let inner = self
            .node
            .create_publisher(&topic, Some(qos.to_profile()))
            .map_err(|e| RosError::Create {
                what: format!("publisher on {topic_name}"),
                reason: e.to_string(),
            })?;
        Ok(RosPublisher {
            inner,
            topic: topic_name,
        })
    }

    /// A subscription to `T` on `name` (resolved and remapped) with the given QoS.
    pub fn create_subscription<T: RosMessage>(&mut self, name: &str, qos: Qos) -> Result<RosSubscription<T>, RosError> {
        let (topic_name, topic) = self.topic_for::<T>(name, qos)?;
        let inner = self
            .node
            .create_subscription(&topic, Some(qos.to_profile()))
            .map_err(|e| RosError::Create {
                what: format!("subscription on {topic_name}"),
                reason: e.to_string(),
            })?;
        Ok(RosSubscription {
            inner,
            topic: topic_name,
        })
    }

    /// Escape hatch for boundary code in this module tree (actions, services).
    pub(crate) fn inner_mut(&mut self) -> &mut Node {
        &mut self.node
    }

    /// The ros2-client node (read-only), e.g. for matched-endpoint counts.
    pub(crate) fn inner(&self) -> &Node {
        &self.node
    }
}

/// Runs `fut` to completion on a named thread.
fn spawn_thread(
    name: &'static str,
    fut: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), RosError> {
    std::thread::Builder::new()
        .name(name.to_string())
        .spawn(move || futures::executor::block_on(fut))
        .map(|_| ())
        .map_err(|source| RosError::Thread { name, source })
}

/// A typed publisher.
pub struct RosPublisher<T: RosMessage> {
    inner: ros2_client::Publisher<T>,
    topic: String,
}

impl<T: RosMessage> RosPublisher<T> {
    /// Publishes one message (a reliable publisher may wait up to 100 ms for buffer space).
    pub fn publish(&self, msg: T) -> Result<(), RosError> {
        self.inner.publish(msg).map_err(|e| RosError::Publish {
            topic: self.topic.clone(),
            reason: e.to_string(),
        })
    }

    /// Resolved topic name.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// Matched subscriptions (needs the node that created this publisher).
    pub fn subscription_count(&self, node: &RosNode) -> usize {
        self.inner.get_subscription_count(node.inner())
    }

    /// Resolves when at least one subscription has matched (unbounded: wrap it in a timeout).
    pub async fn wait_for_subscription(&self, node: &RosNode) {
        self.inner.wait_for_subscription(node.inner()).await
    }
}

/// A typed subscription.
pub struct RosSubscription<T: RosMessage> {
    inner: ros2_client::Subscription<T>,
    topic: String,
}

impl<T: RosMessage> RosSubscription<T> {
    /// Takes one message if one is waiting.
    pub fn try_take(&self) -> Result<Option<T>, RosError> {
        self.inner
            .take()
            .map(|o| o.map(|(m, _)| m))
            .map_err(|e| RosError::Take {
                topic: self.topic.clone(),
                reason: e.to_string(),
            })
    }

    /// Waits for the next message.
    pub async fn recv(&self) -> Result<T, RosError> {
        self.inner
            .async_take()
            .await
            .map(|(m, _)| m)
            .map_err(|e| RosError::Take {
                topic: self.topic.clone(),
                reason: e.to_string(),
            })
    }

    /// All messages as a stream (pin it with `futures::pin_mut!`).
    pub fn stream(&self) -> impl futures::Stream<Item = Result<T, RosError>> + '_ {
        self.inner.async_stream().map(|r| {
            r.map(|(m, _)| m).map_err(|e| RosError::Take {
                topic: self.topic.clone(),
                reason: e.to_string(),
            })
        })
    }

    /// Resolved topic name.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// Matched publishers (needs the node that created this subscription).
    pub fn publisher_count(&self, node: &RosNode) -> usize {
        self.inner.get_publisher_count(node.inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domain_id_parsing() {
        assert_eq!(parse_domain_id(None).unwrap(), 0);
        assert_eq!(parse_domain_id(Some("")).unwrap(), 0);
        assert_eq!(parse_domain_id(Some(" 42 ")).unwrap(), 42);
        assert_eq!(parse_domain_id(Some("232")).unwrap(), 232);
        let e = parse_domain_id(Some("233")).unwrap_err().to_string();
        assert_eq!(e, "ROS_DOMAIN_ID '233' is invalid: must be at most 232");
        assert!(parse_domain_id(Some("abc")).is_err());
        assert!(parse_domain_id(Some("-1")).is_err());
    }

    #[test]
    fn qos_presets_match_rclcpp() {
        use ros2_client::qos::{Durability, History, Reliability};
        let s = Qos::sensor_data().to_profile();
        assert_eq!(s.reliability, Reliability::BestEffort);
        assert_eq!(s.history, History::KeepLast { depth: 5 });
        assert_eq!(s.durability, Durability::Volatile);
        let d = Qos::default_profile().to_profile();
        assert!(matches!(d.reliability, Reliability::Reliable { .. }));
        assert_eq!(d.history, History::KeepLast { depth: 10 });
        let t = Qos::transient_local().to_profile();
        assert_eq!(t.durability, Durability::TransientLocal);
        assert_eq!(Qos::sensor_data().with_depth(0).depth, 1);
    }
}
