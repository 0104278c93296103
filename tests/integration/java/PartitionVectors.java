import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.nio.charset.StandardCharsets;
import java.util.HexFormat;

import org.apache.kafka.clients.producer.internals.BuiltInPartitioner;
import org.apache.kafka.common.utils.Utils;

/**
 * Print Kafka's own murmur2 and default partition for keys read from stdin.
 *
 * Input: one hex-encoded key per line (an empty line is the empty key).
 * Arguments: the partition counts. Output per key: hex, murmur2, then one
 * partition per count, tab-separated. Hex keeps non-ASCII bytes exact.
 */
public class PartitionVectors {
    public static void main(String[] args) throws Exception {
        BufferedReader in = new BufferedReader(new InputStreamReader(System.in, StandardCharsets.US_ASCII));
        String line;
        while ((line = in.readLine()) != null) {
            byte[] key = HexFormat.of().parseHex(line.trim());
            StringBuilder out = new StringBuilder(line.trim()).append('\t').append(Utils.murmur2(key));
            for (String count : args) {
                int n = Integer.parseInt(count);
                int viaUtils = Utils.toPositive(Utils.murmur2(key)) % n;
                int viaProducer = BuiltInPartitioner.partitionForKey(key, n);
                if (viaUtils != viaProducer) {
                    throw new IllegalStateException("Utils and BuiltInPartitioner disagree for " + line);
                }
                out.append('\t').append(viaProducer);
            }
            System.out.println(out);
        }
    }
}
