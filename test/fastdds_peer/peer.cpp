// fastdds_peer: drives a univla_ros node the way rclcpp nodes on rmw_fastrtps_cpp would, and
// reports one line per check: `PASS <check>: <detail>` or `FAIL <check>: <detail>`. Exit status
// 0 only if every check passed. Every wait is bounded; a failure names the message that never
// arrived. Run it only inside a private network namespace (the Rust tests do).
//
// Usage: fastdds_peer arm|nav|fjt-server key=value...   (keys: see run_arm, run_nav and run_fjt_server)
#include <atomic>
#include <cmath>
#include <cstdio>
#include <functional>
#include <iostream>
#include <random>
#include <set>
#include <sstream>

#include "dds.hpp"

using namespace peer;

namespace {

struct Args {
    std::map<std::string, std::string> kv;
    std::string get(const std::string& k, const std::string& dflt = "") const {
        auto it = kv.find(k);
        return it == kv.end() ? dflt : it->second;
    }
    double num(const std::string& k, double dflt) const {
        auto it = kv.find(k);
        return it == kv.end() ? dflt : std::stod(it->second);
    }
};

int failures = 0;

void report(bool ok, const std::string& check, const std::string& detail) {
    std::printf("%s %s: %s\n", ok ? "PASS" : "FAIL", check.c_str(), detail.c_str());
    std::fflush(stdout);
    if (!ok) ++failures;
}

Uuid random_uuid() {
    static std::mt19937_64 rng{std::random_device{}()};
    Uuid u;
    for (auto& b : u) b = static_cast<uint8_t>(rng());
    return u;
}

// --- messages --------------------------------------------------------------------------------

void header(CdrOut& o, int32_t sec, const std::string& frame) {
    o.i32(sec);
    o.u32(0);
    o.str(frame);
}

CdrOut image_msg(uint32_t w, uint32_t h, uint8_t k) {
    CdrOut o;
    header(o, 0, "camera");
    o.u32(h);
    o.u32(w);
    o.str("rgb8");
    o.u8(0);  // is_bigendian
    o.u32(w * 3);
    o.u32(w * h * 3);
    for (uint32_t i = 0; i < w * h * 3; ++i) o.u8(static_cast<uint8_t>(i * 31 + k));
    return o;
}

CdrOut joint_state_msg(const std::vector<std::string>& names, double v) {
    CdrOut o;
    header(o, 0, "");
    o.strings(names);
    o.f64s(std::vector<double>(names.size(), v));
    o.f64s({});
    o.f64s({});
    return o;
}

struct Trajectory {
    std::vector<std::string> joints;
    size_t points = 0;
    size_t positions = 0;
};

Trajectory decode_trajectory(const Bytes& b) {
    CdrIn in(b);
    Trajectory t;
    in.i32();
    in.u32();
    in.str();
    t.joints = in.strings();
    t.points = in.count(4);
    for (size_t i = 0; i < t.points; ++i) {
        auto p = in.f64s();
        if (i == 0) t.positions = p.size();
        in.f64s();
        in.f64s();
        in.f64s();
        in.i32();
        in.u32();
    }
    if (!in.at_end()) throw CdrError("trailing bytes after JointTrajectory");
    return t;
}

// univla_msgs/action/Execute
CdrOut send_goal_request(const Uuid& id, const std::string& instruction, uint32_t max_steps) {
    CdrOut o;
    o.uuid(id);
    o.str(instruction);
    o.u32(max_steps);
    o.i32(0);  // time_limit
    o.u32(0);
    o.str("");  // mode
    return o;
}

struct ExecResult {
    int8_t status = -1;
    uint8_t outcome = 0;
    uint32_t steps = 0;
    std::string reason;
};

ExecResult decode_result(const Bytes& b) {
    CdrIn in(b);
    ExecResult r;
    r.status = in.i8();
    r.outcome = in.u8();
    r.steps = in.u32();
    r.reason = in.str();
    if (!in.at_end()) throw CdrError("trailing bytes after GetResult response");
    return r;
}

std::string describe(const ExecResult& r) {
    std::ostringstream s;
    s << "status=" << int(r.status) << " outcome=" << int(r.outcome) << " steps=" << r.steps << " reason='" << r.reason
      << "'";
    return s.str();
}

constexpr int8_t STATUS_UNKNOWN = 0, STATUS_SUCCEEDED = 4, STATUS_CANCELED = 5, STATUS_ABORTED = 6;
constexpr uint8_t OUTCOME_CANCELED = 3, OUTCOME_PREEMPTED = 4, OUTCOME_STEP_LIMIT = 6;

// --- an rclcpp-like action client -----------------------------------------------------------

class ActionClient {
public:
    ActionClient(Participant& p, const std::string& action, const std::string& pkg, const std::string& name)
        : goal_(p, action + "/_action/send_goal", pkg + "::action::dds_::" + name + "_SendGoal"),
          result_(p, action + "/_action/get_result", pkg + "::action::dds_::" + name + "_GetResult"),
          cancel_(p, action + "/_action/cancel_goal", "action_msgs::srv::dds_::CancelGoal") {
        feedback_ = p.reader("rt" + action + "/_action/feedback", pkg + "::action::dds_::" + name + "_FeedbackMessage_",
                             Qos::dflt());
        status_ = p.reader("rt" + action + "/_action/status", "action_msgs::msg::dds_::GoalStatusArray_", Qos::latched());
    }

    // rclcpp's action_server_is_ready: all three services and both topics matched.
    bool ready() const {
        return goal_.ready() && result_.ready() && cancel_.ready() && matched(feedback_) > 0 && matched(status_) > 0;
    }

    // Sends a goal; nullopt if no answer within `timeout_s`, else whether it was accepted.
    std::optional<bool> send_goal(const Uuid& id, const std::string& instruction, uint32_t max_steps, double timeout_s) {
        int64_t seq = goal_.send(send_goal_request(id, instruction, max_steps));
        auto reply = poll_for(timeout_s, [&] { return goal_.reply(seq); });
        if (!reply) return std::nullopt;
        CdrIn in(*reply);
        return in.boolean();
    }

    int64_t request_result(const Uuid& id) {
        CdrOut o;
        o.uuid(id);
        return result_.send(o);
    }

    std::optional<ExecResult> result_reply(int64_t seq) {
        auto b = result_.reply(seq);
        if (!b) return std::nullopt;
        return decode_result(*b);
    }

    std::optional<ExecResult> get_result(const Uuid& id, double timeout_s) {
        int64_t seq = request_result(id);
        return poll_for(timeout_s, [&] { return result_reply(seq); });
    }

    struct CancelAnswer {
        int8_t code;
        std::vector<Uuid> canceling;
    };

    std::optional<CancelAnswer> cancel(const Uuid& id, double timeout_s) {
        CdrOut o;
        o.uuid(id);
        o.i32(0);
        o.u32(0);
        int64_t seq = cancel_.send(o);
        auto reply = poll_for(timeout_s, [&] { return cancel_.reply(seq); });
        if (!reply) return std::nullopt;
        CdrIn in(*reply);
        CancelAnswer a{in.i8(), {}};
        uint32_t n = in.count(24);
        for (uint32_t i = 0; i < n; ++i) {
            a.canceling.push_back(in.uuid());
            in.i32();
            in.u32();
        }
        return a;
    }

    // Drains feedback and status samples into the per-goal stores.
    void pump() {
        while (auto t = take(feedback_)) {
            CdrIn in(t->body);
            Uuid id = in.uuid();
            feedback_steps_[id].push_back(in.u32());
        }
        while (auto t = take(status_)) {
            CdrIn in(t->body);
            uint32_t n = in.count(25);
            for (uint32_t i = 0; i < n; ++i) {
                Uuid id = in.uuid();
                in.i32();
                in.u32();
                statuses_[id] = in.i8();
            }
        }
    }

    std::vector<uint32_t> feedback(const Uuid& id) {
        pump();
        return feedback_steps_[id];
    }

    std::optional<int8_t> status(const Uuid& id) {
        pump();
        auto it = statuses_.find(id);
        if (it == statuses_.end()) return std::nullopt;
        return it->second;
    }

private:
    ServiceClient goal_, result_, cancel_;
    fdds::DataReader* feedback_;
    fdds::DataReader* status_;
    std::map<Uuid, std::vector<uint32_t>> feedback_steps_;
    std::map<Uuid, int8_t> statuses_;
};

// --- ros_discovery_info ----------------------------------------------------------------------

struct NodeInfo {
    std::string ns, name;
    size_t readers = 0, writers = 0;
};

// rmw_dds_common/ParticipantEntitiesInfo; `gid_len` is 24 on Humble and 16 from Iron on.
std::vector<NodeInfo> decode_discovery(const Bytes& b, size_t gid_len) {
    CdrIn in(b);
    in.raw(gid_len);
    std::vector<NodeInfo> nodes(in.count(8));
    for (auto& n : nodes) {
        n.ns = in.str();
        n.name = in.str();
        n.readers = in.count(gid_len);
        in.raw(n.readers * gid_len);
        n.writers = in.count(gid_len);
        in.raw(n.writers * gid_len);
    }
    if (!in.at_end()) throw CdrError("trailing bytes after ParticipantEntitiesInfo");
    return nodes;
}

// --- parameters (rcl_interfaces) -------------------------------------------------------------

struct ParamValue {
    uint8_t type = 0;
    bool b = false;
    int64_t i = 0;
    double d = 0;
    std::string s;
};

ParamValue decode_param_value(CdrIn& in) {
    ParamValue v;
    v.type = in.u8();
    v.b = in.boolean();
    v.i = in.i64();
    v.d = in.f64();
    v.s = in.str();
    in.raw(in.count(1));  // byte_array
    in.raw(in.count(1));  // bool_array
    for (uint32_t n = in.count(8); n > 0; --n) in.i64();
    in.f64s();
    in.strings();
    return v;
}

void encode_param_value(CdrOut& o, const ParamValue& v) {
    o.u8(v.type);
    o.boolean(v.b);
    o.i64(v.i);
    o.f64(v.d);
    o.str(v.s);
    for (int k = 0; k < 5; ++k) o.u32(0);  // empty arrays
}

void check_parameters(Participant& p, const std::string& node, double wait_s, double rate_hz) {
    ServiceClient get(p, node + "/get_parameters", "rcl_interfaces::srv::dds_::GetParameters");
    ServiceClient list(p, node + "/list_parameters", "rcl_interfaces::srv::dds_::ListParameters");
    ServiceClient set(p, node + "/set_parameters", "rcl_interfaces::srv::dds_::SetParameters");
    if (!poll_for(wait_s, [&] { return get.ready() && list.ready() && set.ready(); })) {
        report(false, "parameter_services", "get/list/set_parameters services of " + node + " not discovered");
        return;
    }
    {
        CdrOut o;
        o.strings({"control_rate_hz"});
        auto r = poll_for(10, [&, seq = get.send(o)] { return get.reply(seq); });
        if (!r) {
            report(false, "get_parameters", "no GetParameters reply");
        } else {
            CdrIn in(*r);
            uint32_t n = in.count(1);
            ParamValue v = n ? decode_param_value(in) : ParamValue{};
            report(n == 1 && v.type == 3 && v.d == rate_hz, "get_parameters",
                   "control_rate_hz: n=" + std::to_string(n) + " type=" + std::to_string(v.type) + " value=" + std::to_string(v.d));
        }
    }
    {
        CdrOut o;
        o.strings({});
        o.u64(0);
        auto r = poll_for(10, [&, seq = list.send(o)] { return list.reply(seq); });
        if (!r) {
            report(false, "list_parameters", "no ListParameters reply");
        } else {
            CdrIn in(*r);
            auto names = in.strings();
            std::set<std::string> set_names(names.begin(), names.end());
            report(set_names.count("checkpoint") && set_names.count("control_rate_hz"), "list_parameters",
                   std::to_string(names.size()) + " names");
        }
    }
    {
        // A parameter the node does not use; rclcpp-style nodes that allow undeclared
        // parameters accept it, and get_parameters then returns it.
        CdrOut o;
        o.u32(1);
        o.str("interop_probe");
        encode_param_value(o, ParamValue{4, false, 0, 0, "fastdds"});
        auto r = poll_for(10, [&, seq = set.send(o)] { return set.reply(seq); });
        if (!r) {
            report(false, "set_parameters", "no SetParameters reply");
        } else {
            CdrIn in(*r);
            uint32_t n = in.count(1);
            bool ok = n == 1 && in.boolean();
            std::string reason = n == 1 ? in.str() : "";
            CdrOut g;
            g.strings({"interop_probe"});
            auto back = poll_for(10, [&, seq = get.send(g)] { return get.reply(seq); });
            std::string value;
            if (back) {
                CdrIn bi(*back);
                if (bi.count(1) == 1) value = decode_param_value(bi).s;
            }
            report(ok && value == "fastdds", "set_parameters",
                   std::string("successful=") + (ok ? "true" : "false") + " reason='" + reason + "' read back='" + value + "'");
        }
    }
}

// The node's entry in ros_discovery_info, decoded with this distribution's Gid layout.
void check_discovery_info(fdds::DataReader* disc, const std::string& node, const std::string& distro, double wait) {
    size_t gid_len = distro == "humble" ? 24 : 16;
    std::string want_ns = node.substr(0, node.rfind('/'));
    std::string want_name = node.substr(node.rfind('/') + 1);
    if (want_ns.empty()) want_ns = "/";
    std::string seen;
    auto found = poll_for(wait, [&]() -> std::optional<NodeInfo> {
        while (auto s = take(disc)) {
            try {
                for (const auto& n : decode_discovery(s->body, gid_len)) {
                    seen += n.ns + "|" + n.name + " ";
                    if (n.ns == want_ns && n.name == want_name) return n;
                }
            } catch (const CdrError& e) {
                seen += std::string("<undecodable: ") + e.what() + "> ";
            }
        }
        return std::nullopt;
    });
    report(found && found->writers > 0 && found->readers > 0, "discovery_info_" + distro,
           found ? want_ns + "/" + want_name + " with " + std::to_string(found->readers) + " readers, " +
                       std::to_string(found->writers) + " writers"
                 : "no decodable ros_discovery_info entry for " + node + " (seen: " + seen + ")");
}

// One /rosout writer for the node's one participant (rcl creates one per node), and its /clock
// reader typed rosgraph_msgs/Clock, so a simulator's /clock matches it and tools see no type
// conflict on /clock.
void check_graph_hygiene(fdds::DataReader* rosout, fdds::DataWriter* clock, double wait) {
    fdds::SubscriptionMatchedStatus rs;
    poll_for(wait, [&]() -> std::optional<bool> {
        rosout->get_subscription_matched_status(rs);
        return rs.current_count >= 1 ? std::optional(true) : std::nullopt;
    });
    // Let a second writer, if there is one, be discovered too.
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
    rosout->get_subscription_matched_status(rs);
    report(rs.current_count == 1, "rosout_one_writer", std::to_string(rs.current_count) + " /rosout writers matched");
    fdds::PublicationMatchedStatus st;
    auto readers = poll_for(wait, [&]() -> std::optional<int32_t> {
        clock->get_publication_matched_status(st);
        return st.current_count >= 1 ? std::optional(st.current_count) : std::nullopt;
    });
    report(readers.has_value(), "clock_reader_type",
           readers ? std::to_string(*readers) + " rosgraph_msgs/Clock readers on /clock"
                   : "no /clock reader typed rosgraph_msgs/Clock matched");
}

// --- the arm scenario ------------------------------------------------------------------------

int run_arm(const Args& a) {
    uint32_t domain = static_cast<uint32_t>(a.num("domain", 0));
    std::string action = a.get("action", "/robot/arm_policy/execute");
    std::string node = a.get("node", "/robot/arm_policy");
    std::string distro = a.get("distro", "jazzy");
    double wait = a.num("wait", 90);
    // "At once": rcl_action answers these from its own state, without the application.
    double prompt = a.num("prompt", 5);
    std::vector<std::string> joints;
    for (int i = 1; i <= 7; ++i) joints.push_back("joint" + std::to_string(i));

    Participant p(domain);
    Participant p2(domain);  // a second process-like client (a monitor, a behaviour tree)

    // Robot inputs, published from a thread as a camera driver and robot_state_publisher would.
    auto* cam = p.writer("rt" + a.get("image", "/cam/image"), "sensor_msgs::msg::dds_::Image_", Qos::sensor());
    auto* js = p.writer("rt" + a.get("joint_states", "/robot/joint_states"), "sensor_msgs::msg::dds_::JointState_", Qos::dflt());
    auto* traj = p.reader("rt" + a.get("trajectory", "/robot/joint_trajectory"),
                          "trajectory_msgs::msg::dds_::JointTrajectory_", Qos::dflt());
    auto* disc = p.reader("ros_discovery_info", "rmw_dds_common::msg::dds_::ParticipantEntitiesInfo_", Qos::latched());
    // Graph hygiene probes: /rosout as rcl reads it, and /clock as a simulator publishes it.
    auto* rosout = p.reader("rt/rosout", "rcl_interfaces::msg::dds_::Log_", Qos::dflt());
    auto* clock = p.writer("rt/clock", "rosgraph_msgs::msg::dds_::Clock_", Qos::dflt());
    std::atomic<bool> stop{false};
    std::thread inputs([&] {
        auto start = Clock::now();
        for (uint8_t k = 0; !stop && since(start) < 600; ++k) {
            write(cam, image_msg(64, 48, k));
            write(js, joint_state_msg(joints, 0.125));
            std::this_thread::sleep_for(std::chrono::milliseconds(66));
        }
    });
    struct Join {
        std::atomic<bool>& s;
        std::thread& t;
        ~Join() {
            s = true;
            t.join();
        }
    } join{stop, inputs};

    ActionClient c(p, action, "univla_msgs", "Execute");
    ActionClient c2(p2, action, "univla_msgs", "Execute");
    if (!poll_for(wait, [&] { return c.ready() && c2.ready(); })) {
        report(false, "action_discovery", "the action server's services/topics under " + action + "/_action/ were not all matched");
        return 1;
    }
    report(true, "action_discovery", "send_goal, get_result, cancel_goal, feedback and status matched");

    // Goal A; the node rejects goals until it has images, so retry.
    Uuid goal_a{};
    bool accepted = false;
    auto start = Clock::now();
    while (!accepted && since(start) < wait) {
        goal_a = random_uuid();
        auto r = c.send_goal(goal_a, "pick up the red cup", 0, 10);
        if (!r) {
            report(false, "send_goal", "no SendGoal response");
            return 1;
        }
        accepted = *r;
        if (!accepted) std::this_thread::sleep_for(std::chrono::milliseconds(300));
    }
    report(accepted, "send_goal", accepted ? "goal A accepted" : "goal A never accepted");
    if (!accepted) return 1;
    // What `ros2 action send_goal` and rclcpp's async_send_goal do: ask for the result at once.
    int64_t result_a = c.request_result(goal_a);

    auto fb = poll_for(wait, [&]() -> std::optional<std::vector<uint32_t>> {
        auto f = c.feedback(goal_a);
        return f.size() >= 3 ? std::optional(f) : std::nullopt;
    });
    bool fb_ok = fb && (*fb)[1] == (*fb)[0] + 1 && (*fb)[2] == (*fb)[1] + 1;
    report(fb_ok, "feedback", fb ? "steps " + std::to_string((*fb)[0]) + ".." + std::to_string((*fb)[2]) : "no 3 feedback messages of goal A");

    auto t = poll_for(wait, [&]() -> std::optional<Trajectory> {
        while (auto s = take(traj)) {
            Trajectory tr = decode_trajectory(s->body);
            if (tr.points > 0) return tr;
        }
        return std::nullopt;
    });
    report(t && t->joints == joints && t->positions == 7, "joint_trajectory",
           t ? std::to_string(t->points) + " points, " + std::to_string(t->joints.size()) + " joints" : "no JointTrajectory");

    // Preemption: B replaces A; the result request sent while A ran is answered.
    Uuid goal_b = random_uuid();
    auto rb = c.send_goal(goal_b, "place it on the plate", 3, 10);
    report(rb && *rb, "preempt_send_goal", rb ? (*rb ? "goal B accepted" : "goal B rejected") : "no SendGoal response for B");
    auto ra = poll_for(wait, [&] { return c.result_reply(result_a); });
    report(ra && ra->status == STATUS_ABORTED && ra->outcome == OUTCOME_PREEMPTED, "result_requested_early",
           ra ? "A: " + describe(*ra) : "no GetResult response for goal A (requested right after acceptance)");

    // B ends by its step limit; ask for its result only afterwards (late), twice, and from a
    // second client.
    auto sb = poll_for(wait, [&]() -> std::optional<int8_t> {
        auto s = c.status(goal_b);
        return s && *s == STATUS_SUCCEEDED ? s : std::nullopt;
    });
    report(sb.has_value(), "status_topic", sb ? "goal B SUCCEEDED on the status topic" : "goal B never SUCCEEDED on the status topic");
    auto expect_b = [](const std::optional<ExecResult>& r) {
        return r && r->status == STATUS_SUCCEEDED && r->outcome == OUTCOME_STEP_LIMIT && r->steps == 3;
    };
    auto late = c.get_result(goal_b, prompt);
    report(expect_b(late), "result_late", late ? "B: " + describe(*late) : "no GetResult response for goal B after it ended");
    auto again = c.get_result(goal_b, prompt);
    report(expect_b(again), "result_repeated", again ? "B: " + describe(*again) : "no response to a second GetResult for goal B");
    auto other = c2.get_result(goal_b, prompt);
    report(expect_b(other), "result_second_client",
           other ? "B: " + describe(*other) : "no GetResult response for goal B to a second client");
    auto unknown = c.get_result(random_uuid(), prompt);
    report(unknown && unknown->status == STATUS_UNKNOWN, "result_unknown_goal",
           unknown ? describe(*unknown) : "no GetResult response for an unknown goal");

    // Two clients wait for the same running goal.
    Uuid goal_d = random_uuid();
    auto rd = c.send_goal(goal_d, "stack the blocks", 4, 10);
    if (rd && *rd) {
        int64_t s1 = c.request_result(goal_d);
        int64_t s2 = c2.request_result(goal_d);
        auto d1 = poll_for(wait, [&] { return c.result_reply(s1); });
        auto d2 = poll_for(wait, [&] { return c2.result_reply(s2); });
        bool ok = d1 && d2 && d1->status == STATUS_SUCCEEDED && d2->status == STATUS_SUCCEEDED && d1->steps == 4 &&
                  d2->steps == 4;
        report(ok, "result_two_clients",
               std::string(d1 ? "client 1: " + describe(*d1) : "no GetResult response to client 1") + "; " +
                   (d2 ? "client 2: " + describe(*d2) : "no GetResult response to client 2"));
    } else {
        report(false, "result_two_clients", "goal D was not accepted");
    }

    // Cancel.
    Uuid goal_c = random_uuid();
    auto rc = c.send_goal(goal_c, "open the drawer", 0, 10);
    if (rc && *rc) {
        poll_for(wait, [&]() -> std::optional<bool> {
            return c.feedback(goal_c).empty() ? std::nullopt : std::optional(true);
        });
        auto ans = c.cancel(goal_c, 10);
        bool ok = ans && ans->code == 0 && ans->canceling.size() == 1 && ans->canceling[0] == goal_c;
        report(ok, "cancel", ans ? "return_code=" + std::to_string(ans->code) + " canceling=" + std::to_string(ans->canceling.size())
                                 : "no CancelGoal response");
        auto r = c.get_result(goal_c, wait);
        report(r && r->status == STATUS_CANCELED && r->outcome == OUTCOME_CANCELED, "cancel_result",
               r ? describe(*r) : "no GetResult response for the canceled goal");
        auto again_c = c.cancel(goal_c, prompt);
        report(again_c && again_c->code == 3 && again_c->canceling.empty(), "cancel_terminated_goal",
               again_c ? "return_code=" + std::to_string(again_c->code) : "no CancelGoal response for an ended goal");
    } else {
        report(false, "cancel", "goal C was not accepted");
    }
    auto cu = c.cancel(random_uuid(), prompt);
    report(cu && cu->code == 2 && cu->canceling.empty(), "cancel_unknown_goal",
           cu ? "return_code=" + std::to_string(cu->code) : "no CancelGoal response for an unknown goal");

    check_parameters(p, node, wait, 10.0);
    check_discovery_info(disc, node, distro, wait);
    check_graph_hygiene(rosout, clock, prompt);
    return failures == 0 ? 0 : 1;
}


// --- the navigation scenario -------------------------------------------------------------------

struct TwistMsg {
    double lx, ly, lz, ax, ay, az;
};

TwistMsg decode_twist(const Bytes& b) {
    CdrIn in(b);
    return TwistMsg{in.f64(), in.f64(), in.f64(), in.f64(), in.f64(), in.f64()};
}

int run_nav(const Args& a) {
    uint32_t domain = static_cast<uint32_t>(a.num("domain", 0));
    std::string action = a.get("action", "/base/nav_policy/execute");
    std::string node = a.get("node", "/base/nav_policy");
    std::string distro = a.get("distro", "jazzy");
    double wait = a.num("wait", 90);
    double prompt = a.num("prompt", 5);
    double linear = a.num("linear", 0.25);
    double angular = a.num("angular_deg", 15) * M_PI / 180.0;
    double rate = a.num("rate", 10);

    Participant p(domain);
    auto* cam = p.writer("rt" + a.get("image", "/cam/image"), "sensor_msgs::msg::dds_::Image_", Qos::sensor());
    auto* cmd = p.reader("rt" + a.get("cmd_vel", "/base/cmd_vel"), "geometry_msgs::msg::dds_::Twist_", Qos::dflt());
    auto* disc = p.reader("ros_discovery_info", "rmw_dds_common::msg::dds_::ParticipantEntitiesInfo_", Qos::latched());
    std::atomic<bool> stop{false};
    std::thread inputs([&] {
        auto start = Clock::now();
        for (uint8_t k = 0; !stop && since(start) < 600; ++k) {
            write(cam, image_msg(64, 48, k));
            std::this_thread::sleep_for(std::chrono::milliseconds(66));
        }
    });
    struct Join {
        std::atomic<bool>& s;
        std::thread& t;
        ~Join() {
            s = true;
            t.join();
        }
    } join{stop, inputs};
    // Every velocity command the base received, with its arrival time.
    std::vector<std::pair<Clock::time_point, TwistMsg>> twists;
    size_t bad_twists = 0;
    std::string bad;
    auto drain = [&] {
        while (auto s = take(cmd)) {
            try {
                twists.emplace_back(Clock::now(), decode_twist(s->body));
            } catch (const CdrError& e) {
                ++bad_twists;
                bad = e.what();
            }
        }
    };
    auto is_zero = [](const TwistMsg& t) { return t.lx == 0 && t.ly == 0 && t.lz == 0 && t.ax == 0 && t.ay == 0 && t.az == 0; };

    ActionClient c(p, action, "univla_msgs", "Execute");
    if (!poll_for(wait, [&] { return c.ready(); })) {
        report(false, "action_discovery", "the action server's services/topics under " + action + "/_action/ were not all matched");
        return 1;
    }
    report(true, "action_discovery", "send_goal, get_result, cancel_goal, feedback and status matched");

    // A goal of at most 3 decisions; the node rejects goals until it has images, so retry.
    Uuid goal_a{};
    bool accepted = false;
    auto start = Clock::now();
    while (!accepted && since(start) < wait) {
        goal_a = random_uuid();
        auto r = c.send_goal(goal_a, "walk to the sofa", 3, 10);
        if (!r) {
            report(false, "send_goal", "no SendGoal response");
            return 1;
        }
        accepted = *r;
        if (!accepted) std::this_thread::sleep_for(std::chrono::milliseconds(300));
    }
    report(accepted, "send_goal", accepted ? "goal accepted" : "goal never accepted");
    if (!accepted) return 1;
    int64_t result_a = c.request_result(goal_a);
    auto ra = poll_for(wait, [&] { return c.result_reply(result_a); });
    bool a_ok = ra && ra->status == STATUS_SUCCEEDED &&
                ((ra->outcome == OUTCOME_STEP_LIMIT && ra->steps == 3) || (ra->steps >= 1 && ra->steps <= 3));
    report(a_ok, "result_requested_early", ra ? describe(*ra) : "no GetResult response (requested right after acceptance)");
    auto late = c.get_result(goal_a, prompt);
    report(late && ra && late->status == ra->status && late->steps == ra->steps, "result_late",
           late ? describe(*late) : "no GetResult response after the goal ended");
    auto unknown = c.get_result(random_uuid(), prompt);
    report(unknown && unknown->status == STATUS_UNKNOWN, "result_unknown_goal",
           unknown ? describe(*unknown) : "no GetResult response for an unknown goal");

    // Cancel stops the base with a zero twist (unless the policy chose STOP first: retry).
    bool canceled = false;
    std::string cancel_detail = "every goal ended by STOP before its cancel";
    for (int attempt = 0; attempt < 3 && !canceled; ++attempt) {
        Uuid g = random_uuid();
        auto r = c.send_goal(g, "find the kitchen", 0, 10);
        if (!r || !*r) {
            cancel_detail = "goal for the cancel was not accepted";
            break;
        }
        drain();
        auto t_cancel = Clock::now();
        auto ans = c.cancel(g, 10);
        if (!ans) {
            cancel_detail = "no CancelGoal response";
            break;
        }
        if (ans->code != 0) continue;
        auto res = c.get_result(g, wait);
        auto zero = poll_for(prompt, [&]() -> std::optional<bool> {
            drain();
            for (const auto& [at, t] : twists)
                if (at >= t_cancel && is_zero(t)) return true;
            return std::nullopt;
        });
        canceled = res && res->status == STATUS_CANCELED && res->outcome == OUTCOME_CANCELED && zero;
        cancel_detail = std::string(res ? describe(*res) : "no GetResult response for the canceled goal") +
                        (zero ? ", zero twist after the cancel" : ", no zero twist after the cancel");
    }
    report(canceled, "cancel_zero_twist", cancel_detail);

    // Every command decodes and is one of the configured profiles.
    drain();
    size_t off_profile = 0;
    for (const auto& [at, t] : twists) {
        bool fwd = t.lx == linear && t.az == 0;
        bool turn = t.lx == 0 && std::abs(std::abs(t.az) - angular) < 1e-9;
        bool ok = t.ly == 0 && t.lz == 0 && t.ax == 0 && t.ay == 0 && (is_zero(t) || fwd || turn);
        off_profile += ok ? 0 : 1;
    }
    report(!twists.empty() && bad_twists == 0 && off_profile == 0, "cmd_vel",
           std::to_string(twists.size()) + " Twist messages, " + std::to_string(bad_twists) + " undecodable" +
               (bad.empty() ? "" : " (" + bad + ")") + ", " + std::to_string(off_profile) + " off the configured profiles");

    check_parameters(p, node, wait, rate);
    check_discovery_info(disc, node, distro, wait);
    return failures == 0 ? 0 : 1;
}

// --- a FollowJointTrajectory server, as ros2_control's joint_trajectory_controller ----------

// The request's identity as rmw_fastrtps's server records it: the client's reply reader (from
// related_sample_identity) when given, else the request writer; the request's sequence number.
rtps::WriteParams reply_params(const fdds::SampleInfo& info) {
    rtps::WriteParams wp;
    rtps::GUID_t guid = info.related_sample_identity.writer_guid();
    if (guid == rtps::GUID_t::unknown()) guid = info.sample_identity.writer_guid();
    wp.related_sample_identity().writer_guid() = guid;
    wp.related_sample_identity().sequence_number() = info.sample_identity.sequence_number();
    return wp;
}

bool reply(fdds::DataWriter* w, const fdds::SampleInfo& request, const CdrOut& body) {
    RawSample s{body.b};
    rtps::WriteParams wp = reply_params(request);
    return w->write(&s, wp);
}

int run_fjt_server(const Args& a) {
    uint32_t domain = static_cast<uint32_t>(a.num("domain", 0));
    std::string action = a.get("action", "/arm_controller/follow_joint_trajectory");
    double run_s = a.num("run", 30);
    double exec_s = a.num("exec", 0.2);
    // How long after a goal ends its result is withheld from get_result requests.
    double late_s = a.num("late", 1.0);
    size_t want_joints = static_cast<size_t>(a.num("joints", 7));
    // Multi-point goals that must arrive (every trajectory the client plans); holds come after.
    size_t min_motion = static_cast<size_t>(a.num("min_motion", 1));
    size_t motion_goals = 0, hold_goals = 0;
    uint32_t last_points = 0;
    const std::string t = "control_msgs::action::dds_::FollowJointTrajectory_";
    const std::string base = action + "/_action/";
    Participant p(domain);
    auto* goal_rq = p.reader("rq" + base + "send_goalRequest", t + "SendGoal_Request_", Qos::dflt());
    auto* goal_rr = p.writer("rr" + base + "send_goalReply", t + "SendGoal_Response_", Qos::dflt());
    auto* res_rq = p.reader("rq" + base + "get_resultRequest", t + "GetResult_Request_", Qos::dflt());
    auto* res_rr = p.writer("rr" + base + "get_resultReply", t + "GetResult_Response_", Qos::dflt());
    auto* can_rq = p.reader("rq" + base + "cancel_goalRequest", "action_msgs::srv::dds_::CancelGoal_Request_", Qos::dflt());
    auto* can_rr = p.writer("rr" + base + "cancel_goalReply", "action_msgs::srv::dds_::CancelGoal_Response_", Qos::dflt());
    p.writer("rt" + base + "feedback", t + "FeedbackMessage_", Qos::dflt());
    auto* status = p.writer("rt" + base + "status", "action_msgs::msg::dds_::GoalStatusArray_", Qos::latched());

    struct Goal {
        Clock::time_point accepted;
        int32_t sec;
        uint32_t nsec;
        int8_t status;  // 2 executing, 4 succeeded, 5 canceled
        std::optional<Clock::time_point> ended;
    };
    std::map<Uuid, Goal> goals;
    std::vector<std::pair<Uuid, fdds::SampleInfo>> waiting;
    size_t bad_goals = 0, result_requests = 0, results_sent = 0, cancels = 0;
    std::string bad;
    auto publish_status = [&] {
        CdrOut o;
        o.u32(static_cast<uint32_t>(goals.size()));
        for (const auto& [id, g] : goals) {
            o.uuid(id);
            o.i32(g.sec);
            o.u32(g.nsec);
            o.i8(g.status);
        }
        write(status, o);
    };
    auto start = Clock::now();
    while (since(start) < run_s) {
        while (auto s = take(goal_rq)) {
            try {
                CdrIn in(s->body);
                Uuid id = in.uuid();
                in.i32();
                in.u32();
                in.str();
                auto joints = in.strings();
                uint32_t points = in.count(4);
                last_points = points;
                ++(points > 1 ? motion_goals : hold_goals);
                if (joints.size() != want_joints || points == 0) {
                    ++bad_goals;
                    bad = std::to_string(joints.size()) + " joints, " + std::to_string(points) + " points";
                }
                auto now = std::chrono::system_clock::now().time_since_epoch();
                auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(now).count();
                Goal g{Clock::now(), static_cast<int32_t>(ns / 1000000000), static_cast<uint32_t>(ns % 1000000000), 2, std::nullopt};
                goals[id] = g;
                CdrOut o;
                o.boolean(true);
                o.i32(g.sec);
                o.u32(g.nsec);
                reply(goal_rr, s->info, o);
                publish_status();
            } catch (const CdrError& e) {
                ++bad_goals;
                bad = e.what();
            }
        }
        while (auto s = take(res_rq)) {
            CdrIn in(s->body);
            waiting.emplace_back(in.uuid(), s->info);
            ++result_requests;
        }
        while (auto s = take(can_rq)) {
            ++cancels;
            CdrIn in(s->body);
            Uuid id = in.uuid();
            CdrOut o;
            auto it = goals.find(id);
            if (it != goals.end() && it->second.status == 2) {
                it->second.status = 5;
                it->second.ended = Clock::now();
                o.i8(0);
                o.u32(1);
                o.uuid(id);
                o.i32(it->second.sec);
                o.u32(it->second.nsec);
                publish_status();
            } else {
                o.i8(it == goals.end() ? 2 : 3);
                o.u32(0);
            }
            reply(can_rr, s->info, o);
        }
        bool changed = false;
        for (auto& [id, g] : goals) {
            if (g.status == 2 && since(g.accepted) > exec_s) {
                g.status = 4;
                g.ended = Clock::now();
                changed = true;
            }
        }
        if (changed) publish_status();
        for (auto it = waiting.begin(); it != waiting.end();) {
            auto g = goals.find(it->first);
            bool unknown = g == goals.end();
            if (unknown || (g->second.ended && since(*g->second.ended) > late_s)) {
                CdrOut o;
                o.i8(unknown ? 0 : g->second.status);
                o.i32(0);  // error_code SUCCESSFUL
                o.str("");
                reply(res_rr, it->second, o);
                ++results_sent;
                it = waiting.erase(it);
            } else {
                ++it;
            }
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    report(last_points == 1, "fjt_last_goal_is_hold",
           "the last goal has " + std::to_string(last_points) + " points (a hold has one)");
    report(motion_goals >= min_motion && hold_goals >= 1 && bad_goals == 0, "fjt_goals",
           std::to_string(goals.size()) + " goals accepted: " + std::to_string(motion_goals) + " trajectories (at least " +
               std::to_string(min_motion) + " expected), " + std::to_string(hold_goals) + " holds, " +
               std::to_string(bad_goals) + " malformed" + (bad.empty() ? "" : " (" + bad + ")"));
    report(result_requests >= 1 && waiting.empty(), "fjt_results_answered_late",
           std::to_string(result_requests) + " get_result requests, " + std::to_string(results_sent) + " answered " +
               std::to_string(late_s) + " s after their goal ended, " + std::to_string(waiting.size()) + " pending, " +
               std::to_string(cancels) + " cancel requests");
    return failures == 0 ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
    if (argc < 2) {
        std::fprintf(stderr, "usage: fastdds_peer arm key=value...\n");
        return 2;
    }
    Args a;
    for (int i = 2; i < argc; ++i) {
        std::string s = argv[i];
        auto eq = s.find('=');
        if (eq == std::string::npos) {
            std::fprintf(stderr, "bad argument '%s' (expected key=value)\n", argv[i]);
            return 2;
        }
        a.kv[s.substr(0, eq)] = s.substr(eq + 1);
    }
    try {
        std::string mode = argv[1];
        if (mode == "arm") return run_arm(a);
        if (mode == "nav") return run_nav(a);
        if (mode == "fjt-server") return run_fjt_server(a);
        std::fprintf(stderr, "unknown mode '%s'\n", argv[1]);
        return 2;
    } catch (const std::exception& e) {
        report(false, "peer", e.what());
        return 1;
    }
}
