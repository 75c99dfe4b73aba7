#include <catch2/catch.hpp>

#include "plexus/common/ipv4.h"

using plexus::Ipv4;
using plexus::Ipv4Prefix;
using plexus::Mac;

TEST_CASE("Ipv4 parses and prints dotted quads", "[unit]") {
  REQUIRE(Ipv4::parse("10.244.0.1")->toString() == "10.244.0.1");
  REQUIRE(Ipv4::parse("255.255.255.255")->hostOrder() == 0xffffffffu);
  for (const char* bad : {"", "1.2.3", "1.2.3.4.5", "256.1.1.1", "a.b.c.d", "1.2.3.4 ", "01234.1.1.1"}) {
    INFO(bad);
    REQUIRE_FALSE(Ipv4::parse(bad).has_value());
  }
}

TEST_CASE("Ipv4Prefix masks, contains and indexes", "[unit]") {
  auto p = Ipv4Prefix::parse("10.244.0.77/24");
  REQUIRE(p);
  REQUIRE(p->toString() == "10.244.0.0/24");
  REQUIRE(p->size() == 256);
  REQUIRE(p->contains(*Ipv4::parse("10.244.0.255")));
  REQUIRE_FALSE(p->contains(*Ipv4::parse("10.244.1.0")));
  REQUIRE(p->at(1).toString() == "10.244.0.1");
  REQUIRE(Ipv4Prefix::parse("0.0.0.0/0")->contains(*Ipv4::parse("8.8.8.8")));
  REQUIRE(Ipv4Prefix::parse("1.2.3.4")->length() == 32);
  REQUIRE(p->contains(*Ipv4Prefix::parse("10.244.0.128/25")));
  REQUIRE_FALSE(Ipv4Prefix::parse("10.244.0.128/25")->contains(*p));
  for (const char* bad : {"10.0.0.0/33", "10.0.0.0/", "10.0.0.0/-1", "10.0.0/8", "10.0.0.0/8x"}) {
    INFO(bad);
    REQUIRE_FALSE(Ipv4Prefix::parse(bad).has_value());
  }
}

TEST_CASE("Mac parses and prints", "[unit]") {
  auto m = Mac::parse("0a:58:0a:f4:00:05");
  REQUIRE(m);
  REQUIRE(m->toString() == "0a:58:0a:f4:00:05");
  REQUIRE_FALSE(m->isZero());
  REQUIRE(Mac{}.isZero());
  REQUIRE_FALSE(Mac::parse("0a:58:0a:f4:00").has_value());
  REQUIRE_FALSE(Mac::parse("0a-58-0a-f4-00-05").has_value());
  REQUIRE_FALSE(Mac::parse("zz:58:0a:f4:00:05").has_value());
}
