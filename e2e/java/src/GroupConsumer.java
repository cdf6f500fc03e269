import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Properties;

import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.common.serialization.StringDeserializer;

/**
 * A consumer-group member with the Java client, for Runnel's e2e tests.
 *
 * <pre>java -cp CLASSPATH GroupConsumer BOOTSTRAP GROUP TOPIC EXPECTED_COUNT TIMEOUT_SECONDS</pre>
 *
 * Subscribes to TOPIC in GROUP (classic protocol, range assignor, earliest
 * reset, no auto commit), polls until it has EXPECTED_COUNT records or the
 * timeout passes, commits synchronously, prints one line per record,
 * {@code partition offset value}, and exits 0 if it got the count, 1 if not,
 * 2 on bad arguments. Its client.id is "java-" + GROUP.
 */
public final class GroupConsumer {
    public static void main(String[] args) {
        if (args.length != 5) {
            System.err.println("usage: GroupConsumer BOOTSTRAP GROUP TOPIC EXPECTED_COUNT TIMEOUT_SECONDS");
            System.exit(2);
        }
        String bootstrap = args[0];
        String group = args[1];
        String topic = args[2];
        int expected = Integer.parseInt(args[3]);
        long deadline = System.nanoTime() + Duration.ofSeconds(Long.parseLong(args[4])).toNanos();

        Properties props = new Properties();
        props.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        props.put(ConsumerConfig.GROUP_ID_CONFIG, group);
        props.put(ConsumerConfig.CLIENT_ID_CONFIG, "java-" + group);
        props.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, "false");
        props.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
        props.put(ConsumerConfig.PARTITION_ASSIGNMENT_STRATEGY_CONFIG,
                  "org.apache.kafka.clients.consumer.RangeAssignor");
        props.put(ConsumerConfig.SESSION_TIMEOUT_MS_CONFIG, "30000");
        props.put(ConsumerConfig.HEARTBEAT_INTERVAL_MS_CONFIG, "500");
        props.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
        props.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());

        List<ConsumerRecord<String, String>> got = new ArrayList<>();
        boolean committed = false;
        try (KafkaConsumer<String, String> consumer = new KafkaConsumer<>(props)) {
            consumer.subscribe(List.of(topic));
            while (got.size() < expected && System.nanoTime() < deadline) {
                for (ConsumerRecord<String, String> r : consumer.poll(Duration.ofMillis(200))) {
                    got.add(r);
                }
            }
            consumer.commitSync(Duration.ofSeconds(30));
            committed = true;
        } catch (RuntimeException e) {
            System.err.println("GroupConsumer failed: " + e);
            e.printStackTrace();
        }
        for (ConsumerRecord<String, String> r : got) {
            System.out.println(r.partition() + " " + r.offset() + " " + r.value());
        }
        System.out.flush();
        if (got.size() < expected) {
            System.err.println("GroupConsumer: got " + got.size() + " of " + expected + " records before the timeout");
        }
        System.exit(committed && got.size() >= expected ? 0 : 1);
    }
}
