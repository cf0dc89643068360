# The client matrix's ruby-redis client: ruby ruby_redis.rb PLAN.json
# Runs the plan tests/test_clients.py writes and prints one JSON line per step,
# in the form tests/clients/redis_py.py prints: the commands through
# Redis#call, the sorted-set views through redis-rb's own methods for them.
require 'json'
require 'redis'

plan = JSON.parse(File.read(ARGV[0]))

def emit(step, i)
  line = begin
    { step: step, i: i, reply: yield }
  rescue Redis::CommandError => e
    { step: step, i: i, error: e.message }
  end
  puts JSON.generate(line)
  $stdout.flush
end

def view(r, op, args)
  key, a, b = args
  case op
  when 'zrevrange' then r.zrevrange(key, Integer(a), Integer(b), with_scores: true)
  when 'zscore' then r.zscore(key, a)
  when 'zcard' then r.zcard(key)
  when 'exists' then r.exists(key)
  when 'type' then r.type(key)
  else raise ArgumentError, "unknown view #{op}"
  end
end

r = Redis.new(host: plan['host'], port: plan['port'], password: plan['password'], timeout: 30)
plan['commands'].each_with_index { |cmd, i| emit('cmd', i) { r.call(cmd) } }
plan['views'].each_with_index { |(op, *args), i| emit('view', i) { view(r, op, args) } }
u = Redis.new(host: plan['host'], port: plan['port'], username: plan['user'], password: plan['user_password'],
              timeout: 30)
plan['user_commands'].each_with_index { |cmd, i| emit('user', i) { u.call(cmd) } }
r.close
u.close
