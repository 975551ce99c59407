FROM 127.0.0.1:25111/bb:2
RUN ls /sys/class/net > /interfaces
RUN if echo x | busybox nc -w 3 127.0.0.1 35571; then echo reached; else echo refused; fi > /loopback
RUN if echo x | busybox nc -w 3 10.77.0.1 52253; then echo reached; else echo refused; fi > /gw
