// The restrictor of the chaos-trace JMX agent: read, search, list and version requests only
// (GET and POST); every write, exec and notification request is refused (Jolokia answers 403),
// whatever the MBean. Remote access is allowed: the recorder polls from the host over the
// container's network.

package org.chaostrace.jmxagent;

import javax.management.ObjectName;
import org.jolokia.restrictor.Restrictor;
import org.jolokia.util.HttpMethod;
import org.jolokia.util.RequestType;

public final class ReadOnlyRestrictor implements Restrictor {
    public boolean isHttpMethodAllowed(HttpMethod method) {
        return method == HttpMethod.GET || method == HttpMethod.POST;
    }

    public boolean isTypeAllowed(RequestType type) {
        return type == RequestType.READ || type == RequestType.SEARCH || type == RequestType.LIST
                || type == RequestType.VERSION;
    }

    public boolean isAttributeReadAllowed(ObjectName name, String attribute) {
        return true;
    }

    public boolean isAttributeWriteAllowed(ObjectName name, String attribute) {
        return false;
    }

    public boolean isOperationAllowed(ObjectName name, String operation) {
        return false;
    }

    public boolean isRemoteAccessAllowed(String... hostOrAddress) {
        return true;
    }

    public boolean isOriginAllowed(String origin, boolean strictChecking) {
        return true;
    }
}
