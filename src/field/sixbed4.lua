-- 6bed4 for Wireshark and tshark: IPv6 carried as the whole payload of UDP/IPv4 datagrams.
-- Written by `bedlab wireshark-plugin` (bedlab @VERSION@).
--
-- Use:     tshark -X lua_script:6bed4.lua -r capture.pcapng
-- Install: copy into ~/.local/lib/wireshark/plugins/ (Wireshark 3.x and later).
--
-- What it shows, per datagram on the router ports 25790 (profile `current`) and 25788
-- (`v01`), on the extra port set in the preferences (sixbed4.port), and on any other UDP port
-- where the payload is exactly one IPv6 packet whose source or destination embeds one of the
-- datagram's outer IPv4:port endpoints (heuristic):
--   sixbed4.kind           "keepalive" (empty payload) or "ipv6" (handed to the IPv6 dissector)
--   sixbed4.profile        "current" / "v01" (from the port or the address layout)
--   sixbed4.src, .dst      the IPv4:port embedded in the inner source / destination address
--   sixbed4.src.ipv4, .src.port, .src.layout ("C", "V", "C-verbatim"), .src.lanip (and .dst.*)
--   sixbed4.src.match      whether the embedded source equals the outer source (not checked
--                          for datagrams from a router port: the router relays others' packets)
--   sixbed4.target         the IPv4:port embedded in an NS/NA target
--   sixbed4.ll             the IPv4:port in a source/target link-layer address option
--   sixbed4.pio            the IPv4:port a Router Advertisement's prefix tells the peer it has
-- Expert info: sixbed4.mismatch (warning: embedded endpoint differs from the outer header),
-- sixbed4.behind_nat (note: the same, but the outer address is private: a capture taken
-- before the NAT), sixbed4.keepalive.ttl (chat), sixbed4.bad_length (error).

local sixbed4 = Proto("sixbed4", "6bed4 (IPv6 over UDP/IPv4)")

local PORT_CURRENT = 25790
local PORT_V01 = 25788

sixbed4.prefs.port = Pref.uint("Extra router port", 0, "A router port besides 25790 and 25788 (0 for none)")

local pf = {
    kind = ProtoField.string("sixbed4.kind", "Kind"),
    profile = ProtoField.string("sixbed4.profile", "Profile"),
    src = ProtoField.string("sixbed4.src", "Source embeds"),
    src_ipv4 = ProtoField.ipv4("sixbed4.src.ipv4", "Source embedded IPv4"),
    src_port = ProtoField.uint16("sixbed4.src.port", "Source embedded port"),
    src_layout = ProtoField.string("sixbed4.src.layout", "Source layout"),
    src_lanip = ProtoField.uint16("sixbed4.src.lanip", "Source local id"),
    src_match = ProtoField.bool("sixbed4.src.match", "Source matches outer header"),
    dst = ProtoField.string("sixbed4.dst", "Destination embeds"),
    dst_ipv4 = ProtoField.ipv4("sixbed4.dst.ipv4", "Destination embedded IPv4"),
    dst_port = ProtoField.uint16("sixbed4.dst.port", "Destination embedded port"),
    dst_layout = ProtoField.string("sixbed4.dst.layout", "Destination layout"),
    dst_lanip = ProtoField.uint16("sixbed4.dst.lanip", "Destination local id"),
    target = ProtoField.string("sixbed4.target", "ND target embeds"),
    ll = ProtoField.string("sixbed4.ll", "Link-layer address embeds"),
    pio = ProtoField.string("sixbed4.pio", "Advertised prefix embeds (you are)"),
}
sixbed4.fields = {
    pf.kind, pf.profile,
    pf.src, pf.src_ipv4, pf.src_port, pf.src_layout, pf.src_lanip, pf.src_match,
    pf.dst, pf.dst_ipv4, pf.dst_port, pf.dst_layout, pf.dst_lanip,
    pf.target, pf.ll, pf.pio,
}

local ex = {
    mismatch = ProtoExpert.new("sixbed4.mismatch", "Embedded IPv4:port differs from the outer header",
        expert.group.PROTOCOL, expert.severity.WARN),
    behind_nat = ProtoExpert.new("sixbed4.behind_nat",
        "Embedded IPv4:port differs from a private outer address (captured before a NAT?)",
        expert.group.SEQUENCE, expert.severity.NOTE),
    keepalive = ProtoExpert.new("sixbed4.keepalive.ttl", "6bed4 keepalive", expert.group.SEQUENCE,
        expert.severity.CHAT),
    bad_length = ProtoExpert.new("sixbed4.bad_length", "UDP payload is not exactly one IPv6 packet",
        expert.group.MALFORMED, expert.severity.ERROR),
}
sixbed4.experts = { ex.mismatch, ex.behind_nat, ex.keepalive, ex.bad_length }

local f_ip_ttl = Field.new("ip.ttl")
local ipv6_dissector = Dissector.get("ipv6")

-- Arithmetic instead of bit operators: works on Lua 5.1 to 5.4.
local function xor2(b)
    if math.floor(b / 2) % 2 == 1 then return b - 2 else return b + 2 end
end

local function is_router_port(p)
    return p == PORT_CURRENT or p == PORT_V01 or (sixbed4.prefs.port ~= 0 and p == sixbed4.prefs.port)
end

local function quad(a, b, c, d)
    return string.format("%d.%d.%d.%d", a, b, c, d)
end

local function private_v4(ip)
    local a, b = ip:match("^(%d+)%.(%d+)%.")
    a, b = tonumber(a), tonumber(b)
    if a == nil then return false end
    return a == 10 or a == 127 or (a == 172 and b >= 16 and b < 32) or (a == 192 and b == 168)
        or (a == 169 and b == 254) or (a == 100 and b >= 64 and b < 128)
end

-- Layout C of the address at `off`: ip, port, lanip.
local function decode_c(tvb, off)
    local b8, b14 = tvb(off + 8, 1):uint(), tvb(off + 14, 1):uint()
    local v0 = (b8 - b8 % 4) + math.floor(b14 / 64)
    local ip = quad(v0, tvb(off + 9, 1):uint(), tvb(off + 10, 1):uint(), tvb(off + 11, 1):uint())
    return ip, tvb(off + 12, 2):uint(), (b14 % 64) * 256 + tvb(off + 15, 1):uint()
end

-- Layout V (Modified EUI-64 of the link-layer address), or nil without the ff:fe marker.
local function decode_v(tvb, off)
    if tvb(off + 11, 1):uint() ~= 0xFF or tvb(off + 12, 1):uint() ~= 0xFE then return nil end
    local port = tvb(off + 9, 1):uint() * 256 + xor2(tvb(off + 8, 1):uint())
    local ip = quad(tvb(off + 10, 1):uint(), tvb(off + 13, 1):uint(), tvb(off + 14, 1):uint(),
        tvb(off + 15, 1):uint())
    return ip, port
end

-- The IPv4 octets verbatim in layout C's positions: a mis-encoding seen in the wild.
local function decode_verbatim(tvb, off)
    local ip = quad(tvb(off + 8, 1):uint(), tvb(off + 9, 1):uint(), tvb(off + 10, 1):uint(),
        tvb(off + 11, 1):uint())
    return ip, tvb(off + 12, 2):uint()
end

-- Whether the address at `off` can embed anything: not multicast, not ::, IID not zero.
local function embeds(tvb, off)
    if tvb(off, 1):uint() == 0xFF then return false end
    for i = 8, 15 do
        if tvb(off + i, 1):uint() ~= 0 then return true end
    end
    return false
end

-- Which layout to read: the profile's, else whichever names an outer endpoint.
-- Returns ip, port, layout, lanip (lanip only for layout C).
local function read_addr(tvb, off, profile, endpoints)
    local cip, cport, lanip = decode_c(tvb, off)
    local vip, vport = decode_v(tvb, off)
    if profile == "v01" and vip then return vip, vport, "V", nil end
    if profile == "current" then return cip, cport, "C", lanip end
    for _, ep in ipairs(endpoints) do
        if ep == cip .. ":" .. cport then return cip, cport, "C", lanip end
        if vip and ep == vip .. ":" .. vport then return vip, vport, "V", nil end
    end
    local wip, wport = decode_verbatim(tvb, off)
    for _, ep in ipairs(endpoints) do
        if ep == wip .. ":" .. wport then return cip, cport, "C-verbatim", lanip end
    end
    if vip then return vip, vport, "V", nil end
    return cip, cport, "C", lanip
end

-- The profile a datagram's ports say, or nil.
local function port_profile(pinfo)
    for _, p in ipairs({ pinfo.src_port, pinfo.dst_port }) do
        if p == PORT_CURRENT then return "current" end
        if p == PORT_V01 then return "v01" end
    end
    return nil
end

local function endpoints_of(pinfo)
    return { tostring(pinfo.src) .. ":" .. pinfo.src_port, tostring(pinfo.dst) .. ":" .. pinfo.dst_port }
end

-- Adds the fields for one inner address; returns "ip:port" or nil.
local function add_addr(tree, tvb, off, which, profile, endpoints)
    if not embeds(tvb, off) then return nil end
    local ip, port, layout, lanip = read_addr(tvb, off, profile, endpoints)
    local ep = ip .. ":" .. port
    local range = tvb(off + 8, 8)
    local sub = tree:add(pf[which], range, ep)
    sub:add(pf[which .. "_ipv4"], range, Address.ip(ip))
    sub:add(pf[which .. "_port"], range, port)
    sub:add(pf[which .. "_layout"], range, layout)
    if lanip ~= nil then sub:add(pf[which .. "_lanip"], range, lanip) end
    return ep, sub
end

-- ND targets, link-layer options and RA prefixes inside an ICMPv6 message.
local function add_nd(tree, tvb, profile, endpoints)
    if tvb:len() < 44 or tvb(6, 1):uint() ~= 58 then return nil end
    local ty = tvb(40, 1):uint()
    local opts
    local you_are
    if ty == 133 then opts = 48
    elseif ty == 134 then opts = 56
    elseif ty == 135 or ty == 136 then
        opts = 64
        if tvb:len() >= 64 and embeds(tvb, 48) then
            local ip, port = read_addr(tvb, 48, profile, endpoints)
            tree:add(pf.target, tvb(56, 8), ip .. ":" .. port)
        end
    else
        return nil
    end
    local stop = math.min(tvb:len(), 40 + tvb(4, 2):uint())
    while opts + 2 <= stop do
        local t, l = tvb(opts, 1):uint(), tvb(opts + 1, 1):uint() * 8
        if l == 0 or opts + l > stop then break end
        if (t == 1 or t == 2) and l == 8 then
            local port = tvb(opts + 3, 1):uint() * 256 + tvb(opts + 2, 1):uint()
            local ip = quad(tvb(opts + 4, 1):uint(), tvb(opts + 5, 1):uint(), tvb(opts + 6, 1):uint(),
                tvb(opts + 7, 1):uint())
            tree:add(pf.ll, tvb(opts + 2, 6), ip .. ":" .. port)
        elseif t == 3 and l == 32 and embeds(tvb, opts + 16) then
            local ip, port = read_addr(tvb, opts + 16, profile == "v01" and "v01" or "current", endpoints)
            you_are = ip .. ":" .. port
            tree:add(pf.pio, tvb(opts + 24, 8), you_are)
        end
        opts = opts + l
    end
    return you_are
end

local function dissect(tvb, pinfo, tree, how)
    local len = tvb:len()
    local root = tree:add(sixbed4, tvb(), "6bed4 (" .. how .. ")")
    local profile = port_profile(pinfo)
    if profile == nil and len >= 40 then
        -- Layout V needs ff:fe in the middle of an identifier that names an outer endpoint.
        local eps = endpoints_of(pinfo)
        for _, off in ipairs({ 8, 24 }) do
            local vip, vport = decode_v(tvb, off)
            for _, ep in ipairs(eps) do
                if vip and ep == vip .. ":" .. vport then profile = "v01" end
            end
        end
    end
    root:add(pf.profile, profile or "current")
    if len == 0 then
        root:add(pf.kind, "keepalive")
        local ttl = f_ip_ttl()
        local ttl_text = ttl and (" TTL " .. tostring(ttl.value)) or ""
        root:add_proto_expert_info(ex.keepalive, "6bed4 keepalive" .. ttl_text)
        pinfo.cols.protocol:set("6bed4")
        pinfo.cols.info:set("Keepalive" .. ttl_text)
        return 0
    end
    root:add(pf.kind, "ipv6")
    if len < 40 or math.floor(tvb(0, 1):uint() / 16) ~= 6 or tvb(4, 2):uint() + 40 > len then
        root:add_proto_expert_info(ex.bad_length)
        pinfo.cols.protocol:set("6bed4")
        pinfo.cols.info:set("Not one IPv6 packet (" .. len .. " bytes)")
        return len
    end
    if tvb(4, 2):uint() + 40 < len then
        root:add_proto_expert_info(ex.bad_length,
            string.format("%d bytes after the IPv6 packet", len - 40 - tvb(4, 2):uint()))
    end
    local eps = endpoints_of(pinfo)
    local src_ep, src_item = add_addr(root, tvb, 8, "src", profile, eps)
    add_addr(root, tvb, 24, "dst", profile, eps)
    local from_router = is_router_port(pinfo.src_port)
    if src_ep and not from_router then
        local outer = eps[1]
        src_item:add(pf.src_match, tvb(8, 16), src_ep == outer)
        if src_ep ~= outer then
            local e = private_v4(tostring(pinfo.src)) and ex.behind_nat or ex.mismatch
            src_item:add_proto_expert_info(e, "Inner source embeds " .. src_ep .. ", outer source is " .. outer)
        end
    end
    local you_are = add_nd(root, tvb, profile, eps)
    ipv6_dissector:call(tvb, pinfo, tree)
    pinfo.cols.protocol:set("6bed4")
    if you_are then pinfo.cols.info:append(" → you are " .. you_are) end
    return len
end

function sixbed4.dissector(tvb, pinfo, tree)
    return dissect(tvb, pinfo, tree, "port " .. (is_router_port(pinfo.dst_port) and pinfo.dst_port or pinfo.src_port))
end

-- Flows (endpoint pairs) the heuristic has recognised: later datagrams on them are 6bed4
-- even when their addresses name nothing (an NA to ff02::1 from a peer's second socket).
local flows = {}

local function flow_key(eps)
    if eps[1] < eps[2] then return eps[1] .. "-" .. eps[2] end
    return eps[2] .. "-" .. eps[1]
end

local function heuristic(tvb, pinfo, tree)
    local len = tvb:len()
    if len < 40 or math.floor(tvb(0, 1):uint() / 16) ~= 6 or tvb(4, 2):uint() + 40 ~= len then
        return false
    end
    local eps = endpoints_of(pinfo)
    if flows[flow_key(eps)] then
        dissect(tvb, pinfo, tree, "heuristic, known flow")
        return true
    end
    for _, off in ipairs({ 8, 24 }) do
        if embeds(tvb, off) then
            local cip, cport = decode_c(tvb, off)
            local vip, vport = decode_v(tvb, off)
            local wip, wport = decode_verbatim(tvb, off)
            for _, ep in ipairs(eps) do
                if ep == cip .. ":" .. cport or (vip and ep == vip .. ":" .. vport) or ep == wip .. ":" .. wport then
                    flows[flow_key(eps)] = true
                    dissect(tvb, pinfo, tree, "heuristic")
                    return true
                end
            end
        end
    end
    return false
end

-- UDP hands an empty payload to no sub-dissector, so keepalives are found afterwards: a
-- post-dissector looks at every UDP datagram of 8 bytes (header only) to a router port.
local keepalive = Proto("sixbed4_keepalive", "6bed4 keepalive detector")
local f_udp_len = Field.new("udp.length")
local f_udp_srcport = Field.new("udp.srcport")
local f_udp_dstport = Field.new("udp.dstport")

function keepalive.dissector(tvb, pinfo, tree)
    local ulen, sport, dport = f_udp_len(), f_udp_srcport(), f_udp_dstport()
    if not (ulen and sport and dport) or ulen.value ~= 8 then return end
    if not (is_router_port(dport.value) or is_router_port(sport.value)) then return end
    local root = tree:add(sixbed4, tvb(0, 0), "6bed4 keepalive")
    local profile = (dport.value == PORT_V01 or sport.value == PORT_V01) and "v01" or "current"
    root:add(pf.profile, profile)
    root:add(pf.kind, "keepalive")
    local ttl = f_ip_ttl()
    local ttl_text = ttl and (" TTL " .. tostring(ttl.value)) or ""
    root:add_proto_expert_info(ex.keepalive, "6bed4 keepalive" .. ttl_text)
    pinfo.cols.protocol:set("6bed4")
    pinfo.cols.info:set("Keepalive" .. ttl_text .. " " .. sport.value .. " → " .. dport.value)
end
register_postdissector(keepalive)

local udp_port = DissectorTable.get("udp.port")
udp_port:add(PORT_CURRENT, sixbed4)
udp_port:add(PORT_V01, sixbed4)
sixbed4:register_heuristic("udp", heuristic)

local registered_extra = 0
function sixbed4.prefs_changed()
    if registered_extra ~= 0 then udp_port:remove(registered_extra, sixbed4) end
    registered_extra = sixbed4.prefs.port
    if registered_extra ~= 0 then udp_port:add(registered_extra, sixbed4) end
end
