// Creates the benchmark's topics in one JVM start, with the Java Admin client:
//   java -cp 'kafka-libs/*' CreateTopics.java BOOTSTRAP [--replication-factor N] [--config KEY=VALUE]...
//        NAME:PARTITIONS ...
// Run as a single-file source program (JDK 11+), so nothing is compiled ahead.
// Replication factor 1 unless given (the single-node runs); every topic setting
// not given with --config is the broker's default, for Kafka and Runnel alike.

import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.concurrent.TimeUnit;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.NewTopic;

public class CreateTopics {
    public static void main(String[] args) throws Exception {
        if (args.length < 2) {
            System.err.println("usage: CreateTopics BOOTSTRAP [--replication-factor N] [--config KEY=VALUE]... "
                    + "NAME:PARTITIONS ...");
            System.exit(2);
        }
        Properties props = new Properties();
        props.put("bootstrap.servers", args[0]);
        short replicationFactor = 1;
        Map<String, String> configs = new HashMap<>();
        List<String> specs = new ArrayList<>();
        for (int i = 1; i < args.length; i++) {
            if (args[i].equals("--replication-factor")) {
                replicationFactor = Short.parseShort(args[++i]);
            } else if (args[i].equals("--config")) {
                String kv = args[++i];
                int eq = kv.indexOf('=');
                configs.put(kv.substring(0, eq), kv.substring(eq + 1));
            } else {
                specs.add(args[i]);
            }
        }
        List<NewTopic> topics = new ArrayList<>();
        for (String spec : specs) {
            int colon = spec.lastIndexOf(':');
            String name = spec.substring(0, colon);
            int partitions = Integer.parseInt(spec.substring(colon + 1));
            topics.add(new NewTopic(name, partitions, replicationFactor).configs(configs));
        }
        try (Admin admin = Admin.create(props)) {
            admin.createTopics(topics).all().get(60, TimeUnit.SECONDS);
        }
        System.out.println("created " + topics.size() + " topics, replication factor " + replicationFactor
                + (configs.isEmpty() ? "" : ", configs " + configs));
    }
}
