// Creates the benchmark's topics in one JVM start, with the Java Admin client:
//   java -cp 'kafka-libs/*' CreateTopics.java HOST:PORT NAME:PARTITIONS ...
// Run as a single-file source program (JDK 11+), so nothing is compiled ahead.
// Replication factor 1 (one broker); every other topic setting is the broker's
// default, for Kafka and Runnel alike.

import java.util.ArrayList;
import java.util.List;
import java.util.Properties;
import java.util.concurrent.TimeUnit;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.NewTopic;

public class CreateTopics {
    public static void main(String[] args) throws Exception {
        if (args.length < 2) {
            System.err.println("usage: CreateTopics HOST:PORT NAME:PARTITIONS ...");
            System.exit(2);
        }
        Properties props = new Properties();
        props.put("bootstrap.servers", args[0]);
        List<NewTopic> topics = new ArrayList<>();
        for (int i = 1; i < args.length; i++) {
            int colon = args[i].lastIndexOf(':');
            String name = args[i].substring(0, colon);
            int partitions = Integer.parseInt(args[i].substring(colon + 1));
            topics.add(new NewTopic(name, partitions, (short) 1));
        }
        try (Admin admin = Admin.create(props)) {
            admin.createTopics(topics).all().get(60, TimeUnit.SECONDS);
        }
        System.out.println("created " + topics.size() + " topics");
    }
}
