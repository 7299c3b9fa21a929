// A ROS 2 peer on plain Fast DDS (Debian's libfastrtps 2.9) that behaves on the wire like
// rclcpp over rmw_fastrtps_cpp, without any ROS installation. It exists to test univla_ros's
// nodes against the ROS 2 default middleware; it is not a general ROS 2 client.
//
// Conventions it follows (ported from rmw_fastrtps_shared_cpp and rcl_action, see README):
//  * topic names: `rt/<topic>`, services `rq/<service>Request` and `rr/<service>Reply`;
//  * type names: `<pkg>::msg::dds_::<Type>_`, `<pkg>::srv::dds_::<Srv>_Request_`,
//    `<pkg>::action::dds_::<Action>_SendGoal_Request_`, ...;
//  * payloads: plain CDR, little endian, unkeyed types (hand-written encoders below);
//  * requests carry the client's reply-reader GUID in `related_sample_identity`, the request's
//    own `sample_identity` gives the sequence number; replies carry that identity in their
//    `related_sample_identity` and a client keeps only replies naming its reader or writer;
//  * participant: name "/" and USER_DATA "enclave=/;" (what rmw_fastrtps sets for the default
//    enclave); endpoints: keep-last history, preallocated-with-realloc memory, asynchronous
//    publication, no data sharing.
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <map>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <fastdds/dds/domain/DomainParticipant.hpp>
#include <fastdds/dds/domain/DomainParticipantFactory.hpp>
#include <fastdds/dds/publisher/DataWriter.hpp>
#include <fastdds/dds/publisher/Publisher.hpp>
#include <fastdds/dds/subscriber/DataReader.hpp>
#include <fastdds/dds/subscriber/SampleInfo.hpp>
#include <fastdds/dds/subscriber/Subscriber.hpp>
#include <fastdds/dds/topic/TopicDataType.hpp>
#include <fastdds/dds/topic/TypeSupport.hpp>
#include <fastdds/rtps/common/WriteParams.h>
#include <fastdds/rtps/transport/UDPv4TransportDescriptor.h>

namespace peer {

namespace fdds = eprosima::fastdds::dds;
namespace rtps = eprosima::fastrtps::rtps;
using Clock = std::chrono::steady_clock;
using Bytes = std::vector<uint8_t>;
using Uuid = std::array<uint8_t, 16>;

// ------------------------------------------------------------------------------------------
// CDR (XCDR1, little endian); alignment is relative to the start of the body, after the
// 4-byte encapsulation header, as in every ROS 2 RMW.

struct CdrOut {
    Bytes b;
    void align(size_t n) {
        while (b.size() % n) b.push_back(0);
    }
    template <class T>
    void prim(T v) {
        align(sizeof(T));
        const auto* p = reinterpret_cast<const uint8_t*>(&v);
        b.insert(b.end(), p, p + sizeof(T));
    }
    void u8(uint8_t v) { b.push_back(v); }
    void i8(int8_t v) { b.push_back(static_cast<uint8_t>(v)); }
    void boolean(bool v) { b.push_back(v ? 1 : 0); }
    void u32(uint32_t v) { prim(v); }
    void i32(int32_t v) { prim(v); }
    void i64(int64_t v) { prim(v); }
    void u64(uint64_t v) { prim(v); }
    void f64(double v) { prim(v); }
    void str(const std::string& s) {
        u32(static_cast<uint32_t>(s.size() + 1));
        b.insert(b.end(), s.begin(), s.end());
        b.push_back(0);
    }
    void uuid(const Uuid& u) { b.insert(b.end(), u.begin(), u.end()); }
    void raw(const Bytes& r) { b.insert(b.end(), r.begin(), r.end()); }
    void strings(const std::vector<std::string>& v) {
        u32(static_cast<uint32_t>(v.size()));
        for (const auto& s : v) str(s);
    }
    void f64s(const std::vector<double>& v) {
        u32(static_cast<uint32_t>(v.size()));
        for (double d : v) f64(d);
    }
};

struct CdrError : std::runtime_error {
    using std::runtime_error::runtime_error;
};

struct CdrIn {
    const Bytes& b;
    size_t pos = 0;
    explicit CdrIn(const Bytes& bytes) : b(bytes) {}
    void need(size_t n) {
        if (pos + n > b.size())
            throw CdrError("truncated at byte " + std::to_string(pos) + " (need " + std::to_string(n) +
                           ", have " + std::to_string(b.size() - pos) + ")");
    }
    void align(size_t n) {
        while (pos % n) {
            need(1);
            ++pos;
        }
    }
    template <class T>
    T prim() {
        align(sizeof(T));
        need(sizeof(T));
        T v;
        std::memcpy(&v, b.data() + pos, sizeof(T));
        pos += sizeof(T);
        return v;
    }
    uint8_t u8() {
        need(1);
        return b[pos++];
    }
    int8_t i8() { return static_cast<int8_t>(u8()); }
    bool boolean() { return u8() != 0; }
    uint32_t u32() { return prim<uint32_t>(); }
    int32_t i32() { return prim<int32_t>(); }
    int64_t i64() { return prim<int64_t>(); }
    uint64_t u64() { return prim<uint64_t>(); }
    float f32() { return prim<float>(); }
    double f64() { return prim<double>(); }
    uint32_t count(size_t elem_min) {
        uint32_t n = u32();
        if (static_cast<uint64_t>(n) * elem_min > b.size() - pos) throw CdrError("sequence length " + std::to_string(n) + " exceeds the payload");
        return n;
    }
    std::string str() {
        uint32_t n = count(1);
        if (n == 0) return {};
        need(n);
        std::string s(reinterpret_cast<const char*>(b.data() + pos), n - 1);
        pos += n;
        return s;
    }
    Uuid uuid() {
        need(16);
        Uuid u;
        std::memcpy(u.data(), b.data() + pos, 16);
        pos += 16;
        return u;
    }
    Bytes raw(size_t n) {
        need(n);
        Bytes r(b.begin() + pos, b.begin() + pos + n);
        pos += n;
        return r;
    }
    std::vector<std::string> strings() {
        std::vector<std::string> v(count(4));
        for (auto& s : v) s = str();
        return v;
    }
    std::vector<double> f64s() {
        std::vector<double> v(count(8));
        for (auto& d : v) d = f64();
        return v;
    }
    // The whole body was read, up to the 0-3 zero bytes a writer may pad the payload with.
    bool at_end() const {
        if (b.size() - pos > 3) return false;
        for (size_t i = pos; i < b.size(); ++i)
            if (b[i] != 0) return false;
        return true;
    }
};

// ------------------------------------------------------------------------------------------
// One opaque TopicDataType per ROS type name: a sample is the CDR body (without the
// encapsulation header); (de)serialization adds or checks the CDR_LE header.

struct RawSample {
    Bytes body;
};

class RawType : public fdds::TopicDataType {
public:
    explicit RawType(const std::string& name) {
        setName(name.c_str());
        m_typeSize = 4096;  // grows on demand (PREALLOCATED_WITH_REALLOC)
        m_isGetKeyDefined = false;
    }
    bool serialize(void* data, rtps::SerializedPayload_t* payload) override {
        auto* s = static_cast<RawSample*>(data);
        uint32_t len = static_cast<uint32_t>(s->body.size() + 4);
        if (payload->max_size < len) payload->reserve(len);
        const uint8_t header[4] = {0x00, 0x01, 0x00, 0x00};  // CDR_LE, options 0
        std::memcpy(payload->data, header, 4);
        if (!s->body.empty()) std::memcpy(payload->data + 4, s->body.data(), s->body.size());
        payload->length = len;
        payload->encapsulation = CDR_LE;
        return true;
    }
    bool deserialize(rtps::SerializedPayload_t* payload, void* data) override {
        auto* s = static_cast<RawSample*>(data);
        if (payload->length < 4 || payload->data[1] != 0x01) return false;  // only CDR_LE
        s->body.assign(payload->data + 4, payload->data + payload->length);
        return true;
    }
    std::function<uint32_t()> getSerializedSizeProvider(void* data) override {
        auto* s = static_cast<RawSample*>(data);
        return [s]() { return static_cast<uint32_t>(s->body.size() + 4); };
    }
    void* createData() override { return new RawSample(); }
    void deleteData(void* data) override { delete static_cast<RawSample*>(data); }
    bool getKey(void*, rtps::InstanceHandle_t*, bool) override { return false; }
};

// ------------------------------------------------------------------------------------------

struct Qos {
    bool reliable = true;
    bool transient_local = false;
    int32_t depth = 10;
    // rmw_qos_profile_default / services_default: reliable, volatile, keep last 10.
    static Qos dflt() { return {}; }
    // rmw_qos_profile_sensor_data: best effort, volatile, keep last 5.
    static Qos sensor() { return {false, false, 5}; }
    // Action status and ros_discovery_info: reliable, transient local, keep last 1.
    static Qos latched() { return {true, true, 1}; }
};

inline int64_t seq_of(const rtps::SequenceNumber_t& s) {
    return (static_cast<int64_t>(s.high) << 32) | static_cast<int64_t>(s.low);
}

inline Bytes guid_bytes(const rtps::GUID_t& g) {
    Bytes out(g.guidPrefix.value, g.guidPrefix.value + 12);
    out.insert(out.end(), g.entityId.value, g.entityId.value + 4);
    return out;
}

// A DDS participant set up as rmw_fastrtps sets one up for a context.
class Participant {
public:
    explicit Participant(uint32_t domain, const std::string& enclave = "/") {
        fdds::DomainParticipantQos q = fdds::PARTICIPANT_QOS_DEFAULT;
        q.name(enclave);
        std::string ud = "enclave=" + enclave + ";";
        q.user_data().data_vec(std::vector<rtps::octet>(ud.begin(), ud.end()));
        // UDP only: shared memory would bypass the test's network namespace between Fast DDS
        // peers and is irrelevant to a RustDDS participant.
        q.transport().use_builtin_transports = false;
        q.transport().user_transports.push_back(std::make_shared<eprosima::fastdds::rtps::UDPv4TransportDescriptor>());
        q.wire_protocol().builtin.readerHistoryMemoryPolicy = rtps::PREALLOCATED_WITH_REALLOC_MEMORY_MODE;
        q.wire_protocol().builtin.writerHistoryMemoryPolicy = rtps::PREALLOCATED_WITH_REALLOC_MEMORY_MODE;
        p_ = fdds::DomainParticipantFactory::get_instance()->create_participant(domain, q);
        if (!p_) throw std::runtime_error("cannot create the Fast DDS participant");
        pub_ = p_->create_publisher(fdds::PUBLISHER_QOS_DEFAULT);
        sub_ = p_->create_subscriber(fdds::SUBSCRIBER_QOS_DEFAULT);
        if (!pub_ || !sub_) throw std::runtime_error("cannot create publisher/subscriber");
    }
    ~Participant() {
        p_->delete_contained_entities();
        fdds::DomainParticipantFactory::get_instance()->delete_participant(p_);
    }
    Participant(const Participant&) = delete;
    Participant& operator=(const Participant&) = delete;

    const rtps::GuidPrefix_t& prefix() const { return p_->guid().guidPrefix; }

    fdds::Topic* topic(const std::string& name, const std::string& type) {
        auto it = topics_.find(name);
        if (it != topics_.end()) return it->second;
        if (!types_.count(type)) {
            fdds::TypeSupport ts(new RawType(type));
            if (ts.register_type(p_) != ReturnCode_t::RETCODE_OK) throw std::runtime_error("register " + type);
            types_.emplace(type, ts);
        }
        fdds::Topic* t = p_->create_topic(name, type, fdds::TOPIC_QOS_DEFAULT);
        if (!t) throw std::runtime_error("cannot create topic " + name + " [" + type + "]");
        topics_[name] = t;
        return t;
    }

    fdds::DataWriter* writer(const std::string& name, const std::string& type, Qos qos) {
        fdds::DataWriterQos q = fdds::DATAWRITER_QOS_DEFAULT;
        q.reliability().kind = qos.reliable ? fdds::RELIABLE_RELIABILITY_QOS : fdds::BEST_EFFORT_RELIABILITY_QOS;
        q.durability().kind = qos.transient_local ? fdds::TRANSIENT_LOCAL_DURABILITY_QOS : fdds::VOLATILE_DURABILITY_QOS;
        q.history().kind = fdds::KEEP_LAST_HISTORY_QOS;
        q.history().depth = qos.depth;
        q.endpoint().history_memory_policy = rtps::PREALLOCATED_WITH_REALLOC_MEMORY_MODE;
        q.publish_mode().kind = fdds::ASYNCHRONOUS_PUBLISH_MODE;
        q.data_sharing().off();
        auto* w = pub_->create_datawriter(topic(name, type), q);
        if (!w) throw std::runtime_error("cannot create writer on " + name);
        return w;
    }

    fdds::DataReader* reader(const std::string& name, const std::string& type, Qos qos) {
        fdds::DataReaderQos q = fdds::DATAREADER_QOS_DEFAULT;
        q.reliability().kind = qos.reliable ? fdds::RELIABLE_RELIABILITY_QOS : fdds::BEST_EFFORT_RELIABILITY_QOS;
        q.durability().kind = qos.transient_local ? fdds::TRANSIENT_LOCAL_DURABILITY_QOS : fdds::VOLATILE_DURABILITY_QOS;
        q.history().kind = fdds::KEEP_LAST_HISTORY_QOS;
        q.history().depth = qos.depth;
        q.endpoint().history_memory_policy = rtps::PREALLOCATED_WITH_REALLOC_MEMORY_MODE;
        q.data_sharing().off();
        auto* r = sub_->create_datareader(topic(name, type), q);
        if (!r) throw std::runtime_error("cannot create reader on " + name);
        return r;
    }

private:
    fdds::DomainParticipant* p_ = nullptr;
    fdds::Publisher* pub_ = nullptr;
    fdds::Subscriber* sub_ = nullptr;
    std::map<std::string, fdds::TypeSupport> types_;
    std::map<std::string, fdds::Topic*> topics_;
};

inline bool write(fdds::DataWriter* w, const CdrOut& msg) {
    RawSample s{msg.b};
    return w->write(&s);
}

inline size_t matched(fdds::DataWriter* w) {
    fdds::PublicationMatchedStatus st;
    w->get_publication_matched_status(st);
    return static_cast<size_t>(st.current_count);
}

inline size_t matched(fdds::DataReader* r) {
    fdds::SubscriptionMatchedStatus st;
    r->get_subscription_matched_status(st);
    return static_cast<size_t>(st.current_count);
}

struct Taken {
    Bytes body;
    fdds::SampleInfo info;
};

// Takes one valid sample if one is waiting.
inline std::optional<Taken> take(fdds::DataReader* r) {
    for (int guard = 0; guard < 1000; ++guard) {
        RawSample s;
        fdds::SampleInfo info;
        if (r->take_next_sample(&s, &info) != ReturnCode_t::RETCODE_OK) return std::nullopt;
        if (info.valid_data) return Taken{std::move(s.body), info};
    }
    return std::nullopt;
}

// A service client as rmw_fastrtps implements one (see the header comment).
class ServiceClient {
public:
    ServiceClient(Participant& p, const std::string& service, const std::string& type_prefix)
        : name_(service) {
        req_ = p.writer("rq" + service + "Request", type_prefix + "_Request_", Qos::dflt());
        rep_ = p.reader("rr" + service + "Reply", type_prefix + "_Response_", Qos::dflt());
    }
    const std::string& name() const { return name_; }
    // rmw_service_server_is_available: the request reader and the reply writer are matched.
    bool ready() const { return matched(req_) > 0 && matched(rep_) > 0; }

    int64_t send(const CdrOut& request) {
        RawSample s{request.b};
        rtps::WriteParams wp;
        wp.related_sample_identity().writer_guid() = rep_->guid();
        if (!req_->write(&s, wp)) throw std::runtime_error("cannot send a request on " + name_);
        return seq_of(wp.sample_identity().sequence_number());
    }

    // The reply to request `seq`, if it has arrived.
    std::optional<Bytes> reply(int64_t seq) {
        while (auto t = take(rep_)) {
            const auto& rel = t->info.related_sample_identity;
            if (rel.writer_guid() != rep_->guid() && rel.writer_guid() != req_->guid()) {
                ++foreign_;
                continue;  // a reply to another client
            }
            replies_[seq_of(rel.sequence_number())] = std::move(t->body);
        }
        auto it = replies_.find(seq);
        if (it == replies_.end()) return std::nullopt;
        Bytes b = std::move(it->second);
        replies_.erase(it);
        return b;
    }

    size_t foreign_replies() const { return foreign_; }

private:
    std::string name_;
    fdds::DataWriter* req_;
    fdds::DataReader* rep_;
    std::map<int64_t, Bytes> replies_;
    size_t foreign_ = 0;
};

inline double since(Clock::time_point t) {
    return std::chrono::duration<double>(Clock::now() - t).count();
}

// Polls `f` every 5 ms until it returns a value or `timeout_s` passes.
template <class F>
auto poll_for(double timeout_s, F f) -> decltype(f()) {
    auto start = Clock::now();
    for (;;) {
        if (auto v = f()) return v;
        if (since(start) > timeout_s) return decltype(f()){};
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
}

}  // namespace peer
